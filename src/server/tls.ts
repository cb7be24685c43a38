import { createSecureContext, type SecureContext } from 'node:tls';
import { X509Certificate, constants as crypto } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.ts';

/**
 * TLS profiles after Mozilla's server-side TLS guidelines. Intermediate: TLS 1.2 + 1.3, ECDHE key
 * exchange with AEAD ciphers only (Node's default list still has CBC suites). Modern: TLS 1.3 only.
 */
const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';
const TLS12_AEAD = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * No renegotiation (TLS 1.2; 1.3 has none): a client that asks for one gets the no_renegotiation
 * alert and its connection fails, as with nginx, which refuses it since 0.8.23. Each renegotiation
 * is a full handshake the server pays for on a connection already admitted (Node allows three per
 * ten minutes, tls.CLIENT_RENEG_LIMIT, and then closes); HTTP/2 forbids it outright (RFC 9113
 * §9.2.1), and TLS scanners report it as a denial-of-service risk.
 */
const NO_RENEGOTIATION = crypto.SSL_OP_NO_RENEGOTIATION;

export function tlsProfile(profile: Config['tls']['profile']) {
  return profile === 'modern'
    ? { minVersion: 'TLSv1.3' as const, ciphers: TLS13_SUITES, ecdhCurve: 'X25519:prime256v1:secp384r1', secureOptions: NO_RENEGOTIATION }
    : { minVersion: 'TLSv1.2' as const, ciphers: `${TLS13_SUITES}:${TLS12_AEAD}`, ecdhCurve: 'X25519:prime256v1:secp384r1', secureOptions: NO_RENEGOTIATION };
}

export interface CertificatePair { hosts: readonly string[]; cert: string; key: string }

/** Certificates from config, or the development certificate when none is configured. */
export async function loadCertificates(tls: Config['tls']): Promise<CertificatePair[]> {
  if (tls.certificates.length === 0) return [await devCertificate(tls.devCertDir)];
  return Promise.all(tls.certificates.map(async (c) => ({
    hosts: c.hosts,
    cert: await readFile(c.cert, 'utf8'),
    key: await readFile(c.key, 'utf8'),
  })));
}

const DEV_HOSTS = ['localhost', '127.0.0.1', '::1'];

/** A self-signed certificate for localhost, kept on disk and reused until a month before it expires. */
export async function devCertificate(dir: string): Promise<CertificatePair> {
  const certFile = join(dir, 'dev-cert.pem');
  const keyFile = join(dir, 'dev-key.pem');
  try {
    const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    const validTo = new X509Certificate(cert).validToDate.getTime();
    if (validTo - Date.now() > 30 * 86_400_000) return { hosts: DEV_HOSTS, cert, key };
  } catch {
    // missing or unreadable: make a new one
  }
  const notAfter = new Date(Date.now() + 365 * 86_400_000);
  // Loaded only to make one (selfsigned and its X.509 libraries are about 20 MB of heap and code).
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256', notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
    ],
  });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(keyFile, pems.private, { mode: 0o600 });
  await writeFile(certFile, pems.cert);
  return { hosts: DEV_HOSTS, cert: pems.cert, key: pems.private };
}

/**
 * Picks a certificate by SNI: exact host first, then a one-label wildcard (`*.example.com` covers
 * `a.example.com`, not `a.b.example.com`, as RFC 6125 §6.4.3 has it), else the first certificate.
 */
export function sniSelector(pairs: readonly CertificatePair[], options: { minVersion: 'TLSv1.2' | 'TLSv1.3'; ciphers: string; ecdhCurve: string }) {
  const exact = new Map<string, SecureContext>();
  const wildcard = new Map<string, SecureContext>();
  const contexts = pairs.map((pair) => {
    const context = createSecureContext({ cert: pair.cert, key: pair.key, ...options });
    for (const host of pair.hosts) {
      if (host.startsWith('*.')) { if (!wildcard.has(host.slice(2))) wildcard.set(host.slice(2), context); }
      else if (!exact.has(host)) exact.set(host, context);
    }
    return context;
  });
  const fallback = contexts[0];
  return {
    defaultPair: pairs[0],
    select(servername: string): SecureContext {
      const name = servername.toLowerCase().replace(/\.$/, '');
      const hit = exact.get(name);
      if (hit) return hit;
      const dot = name.indexOf('.');
      return (dot > 0 && wildcard.get(name.slice(dot + 1))) || fallback;
    },
  };
}
