/**
 * Where an image is read from or written to: a registry reference, or an OCI image layout on
 * disk written as `oci:DIR[:TAG]` (skopeo's syntax; DIR may not contain ':').
 */
import { resolve } from 'node:path'
import { InvalidArgumentError } from '../errors.js'
import { parseReference, type Reference } from '../registry/reference.js'

export type ImageLocation =
  | { kind: 'registry'; ref: Reference; text: string }
  | { kind: 'oci'; dir: string; tag: string | undefined; text: string }

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/

export function parseLocation(text: string, role: 'source' | 'destination'): ImageLocation {
  if (text.startsWith('oci:')) {
    const rest = text.slice(4)
    const colon = rest.indexOf(':')
    const dir = colon >= 0 ? rest.slice(0, colon) : rest
    const tag = colon >= 0 ? rest.slice(colon + 1) : undefined
    if (dir === '') throw new InvalidArgumentError(`${role} ${JSON.stringify(text)}: oci: needs a directory (oci:DIR[:TAG])`)
    if (tag !== undefined && !TAG.test(tag)) throw new InvalidArgumentError(`${role} ${JSON.stringify(text)}: tag ${JSON.stringify(tag)} is not valid`)
    return { kind: 'oci', dir: resolve(dir), tag, text }
  }
  if (text.startsWith('docker://')) text = text.slice('docker://'.length)
  const ref = parseReference(text)
  if (role === 'destination' && ref.digest !== undefined) {
    throw new InvalidArgumentError(`destination ${JSON.stringify(text)} names a digest; give a tag (the digest of the converted image is new)`)
  }
  return { kind: 'registry', ref, text }
}
