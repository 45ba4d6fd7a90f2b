/**
 * The registry's errors are the project's (src/errors.ts: one class per code). Each carries the
 * coordinates of the failed request (registry, repository, digest, byte range) as fields, so
 * messages name the thing that went wrong and nobody re-assembles it.
 */
export {
  AuthError,
  FetchError,
  ManifestError,
  RegistryError,
  TimeoutError as RegistryTimeoutError,
  describeContext,
  digestMismatch,
  type RequestContext,
} from '../errors.js'
