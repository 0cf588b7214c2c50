// Small, structurally valid pictures for upload tests, made here (no binary fixtures):
// the gateway checks a stored file from its first to its last byte.
import zlib from 'node:zlib';

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

/** A w×h RGB PNG of noise-ish pixels (so it does not compress to nothing). */
export function makePng(w = 16, h = 16, seed = 1) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((w * 3 + 1) * h);
  let x = seed;
  for (let i = 0; i < raw.length; i++) {
    if (i % (w * 3 + 1) === 0) { raw[i] = 0; continue; }
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    raw[i] = x >> 16;
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A JPEG's structure: SOI, APP0/JFIF, SOS with `scan` bytes of entropy-coded data, EOI. */
export function makeJpeg(scan = 2000) {
  const data = Buffer.alloc(scan);
  for (let i = 0; i < scan; i++) data[i] = (i * 7) & 0x7f; // never 0xff
  return Buffer.concat([
    Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]), Buffer.from('JFIF\0\x01\x01\0\0\x01\0\x01\0\0', 'binary'),
    Buffer.from([0xff, 0xda, 0x00, 0x02]), data, Buffer.from([0xff, 0xd9]),
  ]);
}
