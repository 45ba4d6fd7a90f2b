/**
 * `multipart/byteranges` bodies (RFC 9110 §14.6) and Content-Range headers.
 *
 *   --BOUNDARY CRLF
 *   Content-Type: application/octet-stream CRLF
 *   Content-Range: bytes FIRST-LAST/TOTAL CRLF
 *   CRLF
 *   <LAST-FIRST+1 bytes> CRLF
 *   --BOUNDARY CRLF ... --BOUNDARY-- CRLF
 *
 * Part data is binary and may contain the boundary string, so each part is cut by the length its
 * Content-Range declares, never by searching for the next delimiter.
 */

export interface ByteRangePart {
  /** First byte offset (inclusive). */
  start: number
  /** Bytes of the part. */
  data: Buffer
}

export interface ContentRange { start: number; end: number; total: number | undefined }

/** "bytes 0-99/1234" or "bytes 0-99/*" → {start, end (inclusive), total}. */
export function parseContentRange(v: string | undefined): ContentRange | undefined {
  if (!v) return undefined
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v)
  if (!m) return undefined
  const start = Number(m[1])
  const end = Number(m[2])
  if (end < start) return undefined
  return { start, end, total: m[3] === '*' ? undefined : Number(m[3]) }
}

/** The boundary parameter of a multipart/byteranges Content-Type, or undefined. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\/byteranges\s*;/i.test(contentType)) return undefined
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType)
  return m ? (m[1] ?? m[2]) : undefined
}

export class MultipartError extends Error {}

export function parseMultipartByteranges(body: Buffer, boundary: string): ByteRangePart[] {
  const delim = Buffer.from(`--${boundary}`, 'latin1')
  const parts: ByteRangePart[] = []
  let pos = body.indexOf(delim)
  if (pos < 0) throw new MultipartError('no boundary delimiter in multipart body')
  for (;;) {
    pos += delim.length
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return parts // closing "--"
    const headerEnd = body.indexOf('\r\n\r\n', pos, 'latin1')
    if (headerEnd < 0) throw new MultipartError('multipart part has no end of headers')
    const headers = body.toString('latin1', pos, headerEnd).split('\r\n')
    let range: ContentRange | undefined
    for (const h of headers) {
      const colon = h.indexOf(':')
      if (colon > 0 && h.slice(0, colon).trim().toLowerCase() === 'content-range') range = parseContentRange(h.slice(colon + 1))
    }
    if (!range) throw new MultipartError('multipart part has no valid Content-Range')
    const dataStart = headerEnd + 4
    const dataEnd = dataStart + (range.end - range.start + 1)
    if (dataEnd > body.length) throw new MultipartError(`multipart part for bytes ${range.start}-${range.end} is truncated`)
    parts.push({ start: range.start, data: body.subarray(dataStart, dataEnd) })
    pos = body.indexOf(delim, dataEnd)
    if (pos < 0) throw new MultipartError('multipart body ends without a closing delimiter')
  }
}
