import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';

/** A private CA and certificates it signs, made at test start (EC P-256), with their PEM files. */

export interface Pem { cert: string; key: string }
export interface PemFiles extends Pem { certFile: string; keyFile: string }

const dir = mkdtempSync(join(tmpdir(), 'outpost-test-pki-'));
let serial = 0;

function files(name: string, pem: Pem): PemFiles {
  const base = join(dir, `${name}-${++serial}`);
  writeFileSync(`${base}.pem`, pem.cert);
  writeFileSync(`${base}.key`, pem.key, { mode: 0o600 });
  return { ...pem, certFile: `${base}.pem`, keyFile: `${base}.key` };
}

export async function makeCa(name: string): Promise<PemFiles> {
  const pems = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return files(name, { cert: pems.cert, key: pems.private });
}

/** A leaf signed by `ca`: a server certificate for `dns`/`ips`, or a client certificate. */
export async function makeLeaf(ca: Pem, cn: string, options: { dns?: string[]; ips?: string[]; client?: boolean } = {}): Promise<PemFiles> {
  const altNames = [
    ...(options.dns ?? []).map((value) => ({ type: 2 as const, value })),
    ...(options.ips ?? []).map((ip) => ({ type: 7 as const, ip })),
  ];
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256', ca: { cert: ca.cert, key: ca.key },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: !options.client, clientAuth: options.client === true },
      ...(altNames.length > 0 ? [{ name: 'subjectAltName' as const, altNames }] : []),
    ],
  });
  return files(cn, { cert: pems.cert, key: pems.private });
}

/** A file with these contents, for configs that point at bad files. */
export function textFile(name: string, text: string): string {
  const path = join(dir, `${name}-${++serial}`);
  writeFileSync(path, text);
  return path;
}
