// Certificates made inside the test run, with nothing but Node: a CA, a
// server certificate for 127.0.0.1 and localhost, client certificates it
// signs, and the ones a server must refuse (signed by another CA, expired).
// ECDSA P-256 keys through Node's WebCrypto, certificates through
// @peculiar/x509 (which needs a Reflect polyfill, hence reflect-metadata).
// Everything is written as PEM into one temporary directory.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import * as x509 from "@peculiar/x509";

type KeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

/** A certificate and its private key, as PEM text and as files. */
export interface Issued {
  subject: string;
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

let serial = 1;
function nextSerial(): string {
  // Positive, unique within the run: a hex counter behind a fixed prefix.
  return `0a${(serial++).toString(16).padStart(6, "0")}`;
}

async function generateKeys(): Promise<KeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as KeyPair;
}

async function keyPem(keys: KeyPair): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return x509.PemConverter.encode(pkcs8, "PRIVATE KEY");
}

export interface IssueOptions {
  /** Default: valid from an hour ago for a year. */
  notBefore?: Date;
  notAfter?: Date;
}

/** A certificate authority that writes what it issues into `dir`. */
export class CertificateAuthority {
  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly certificate: x509.X509Certificate,
    private readonly keys: KeyPair,
    readonly cert: string,
    readonly certPath: string,
  ) {}

  static async create(dir: string, name: string): Promise<CertificateAuthority> {
    const keys = await generateKeys();
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: nextSerial(),
      name: `CN=${name},O=actionq tests`,
      notBefore: new Date(Date.now() - DAY_MS),
      notAfter: new Date(Date.now() + 365 * DAY_MS),
      signingAlgorithm: ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const cert = certificate.toString("pem");
    const certPath = path.join(dir, `${fileName(name)}.ca.pem`);
    await writeFile(certPath, cert);
    return new CertificateAuthority(name, dir, certificate, keys, cert, certPath);
  }

  /** A server certificate for these DNS names and IP addresses. */
  async issueServer(fileBase: string, dnsNames: string[], ipAddresses: string[], options: IssueOptions = {}): Promise<Issued> {
    const names = [...dnsNames.map((value) => ({ type: "dns" as const, value })), ...ipAddresses.map((value) => ({ type: "ip" as const, value }))];
    return this.issue(fileBase, `CN=${dnsNames[0] ?? ipAddresses[0]},O=actionq tests`, options, [
      new x509.SubjectAlternativeNameExtension(names, false),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    ]);
  }

  /** A client certificate with this subject, such as `CN=worker-a,O=ops`. */
  async issueClient(fileBase: string, subject: string, options: IssueOptions = {}): Promise<Issued> {
    return this.issue(fileBase, subject, options, [
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    ]);
  }

  private async issue(fileBase: string, subject: string, options: IssueOptions, extensions: x509.Extension[]): Promise<Issued> {
    const keys = await generateKeys();
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: nextSerial(),
      subject,
      issuer: this.certificate.subject,
      notBefore: options.notBefore ?? new Date(Date.now() - 60 * 60 * 1000),
      notAfter: options.notAfter ?? new Date(Date.now() + 365 * DAY_MS),
      signingAlgorithm: ALGORITHM,
      publicKey: keys.publicKey,
      signingKey: this.keys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(this.certificate, false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ...extensions,
      ],
    });
    const cert = certificate.toString("pem");
    const key = await keyPem(keys);
    const certPath = path.join(this.dir, `${fileName(fileBase)}.crt.pem`);
    const keyPath = path.join(this.dir, `${fileName(fileBase)}.key.pem`);
    await writeFile(certPath, cert);
    await writeFile(keyPath, key, { mode: 0o600 });
    return { subject, cert, key, certPath, keyPath };
  }
}

function fileName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]+/g, "_");
}

/** The set the TLS suites use. */
export interface TlsFixtures {
  dir: string;
  ca: CertificateAuthority;
  /** Another CA the server does not trust. */
  otherCa: CertificateAuthority;
  /** For 127.0.0.1 and localhost (SAN IP and DNS), signed by `ca`. */
  server: Issued;
  /** Issues a client certificate signed by `ca` (or `by`). */
  client(fileBase: string, subject: string, options?: IssueOptions & { by?: CertificateAuthority }): Promise<Issued>;
  /** Signed by `ca`, valid for a day that ended yesterday. */
  expiredClient(fileBase: string, subject: string): Promise<Issued>;
  remove(): Promise<void>;
}

export async function createTlsFixtures(): Promise<TlsFixtures> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-tls-"));
  const ca = await CertificateAuthority.create(dir, "actionq test CA");
  const otherCa = await CertificateAuthority.create(dir, "some other CA");
  const server = await ca.issueServer("server", ["localhost"], ["127.0.0.1"]);
  return {
    dir,
    ca,
    otherCa,
    server,
    client: (fileBase, subject, options = {}) => (options.by ?? ca).issueClient(fileBase, subject, options),
    expiredClient: (fileBase, subject) =>
      ca.issueClient(fileBase, subject, { notBefore: new Date(Date.now() - 2 * DAY_MS), notAfter: new Date(Date.now() - DAY_MS) }),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
