//! RSA keys: generation, PEM in and out, fingerprints, and the four operations pgseal needs
//! (OAEP wrap/unwrap of a file key, PSS sign/verify). A key may carry an ML-KEM-768 half
//! ([`crate::pq`]), which makes it a hybrid recipient (FORMAT.md §6a): in PEM, a second block
//! after the RSA one, under the same password.
//!
//! Accepted on input: encrypted PKCS#8 (any PBES2 parameters, so the legacy system's 2,048-round
//! keys load), plain PKCS#8, PKCS#1 private keys, SubjectPublicKeyInfo and PKCS#1 public keys,
//! RSA 2,048 bits and up. Written: encrypted PKCS#8 (PBKDF2-HMAC-SHA256, 600,000 rounds,
//! AES-256-CBC) and SubjectPublicKeyInfo — formats OpenSSL and every other toolkit read.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256, RsaParameters, RsaPssSaltLength,
    RsaSignatureEncoding, UnparsedPublicKey,
};
use base64::Engine as _;
use pkcs8::der::pem::LineEnding;
use pkcs8::pkcs5::pbes2;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::hash::sha256;
use crate::pq::{MlKemPrivateKey, MlKemPublicKey, is_ml_kem_768};
use crate::secret::{FileKey, Password, SecretBytes, fill_random};

/// PBKDF2 rounds for keys pgseal writes (OWASP's 2023 figure for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ROUNDS: u32 = 600_000;

/// The smallest RSA modulus pgseal accepts, in bits.
pub const MIN_KEY_BITS: usize = 2048;

/// PSS with the salt as long as the digest: what v2 uses.
static PSS_SIGN_V2: &RsaSignatureEncoding = &RSA_PSS_SHA256;
static PSS_VERIFY_V2: &RsaParameters = &RSA_PSS_2048_8192_SHA256;
/// PSS with the maximum salt length: what the legacy hybrid format used.
static PSS_SIGN_LEGACY: RsaSignatureEncoding =
    RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
static PSS_VERIFY_LEGACY: RsaParameters =
    RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

/// Which PSS salt length a signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PssSalt {
    /// 32 bytes (the SHA-256 output length): v2.
    Digest,
    /// modulus bytes − 34: the legacy hybrid format.
    Max,
}

/// SHA-256 of a public key's SubjectPublicKeyInfo DER: the identity of a key everywhere in pgseal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// What the text form starts with (then unpadded standard base64 of the 32 bytes).
    pub const PREFIX: &'static str = "SHA256:";

    /// The fingerprint of a key given as SubjectPublicKeyInfo DER.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Fingerprint(sha256(spki_der))
    }

    /// A fingerprint from its 32 bytes (as a v2 header or slot stores it).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::PREFIX)?;
        f.write_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let b64 = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|_| Error::InvalidParameter(format!("not a fingerprint: {s}")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidParameter(format!("a fingerprint has 32 bytes: {s}")))?;
        Ok(Fingerprint(bytes))
    }
}

/// The legacy system's fingerprint: `SHA256:` + 32 hex digits of SHA-256 over the public key's
/// PEM *text* + `...`. It depends on formatting and is cut to 128 bits; pgseal keeps it only to
/// match records imported from the old system.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LegacyFingerprint(String);

impl LegacyFingerprint {
    /// The legacy fingerprint of this exact PEM text.
    pub fn of_pem_text(pem: &str) -> Self {
        let hex = hex::encode(sha256(pem.as_bytes()));
        LegacyFingerprint(format!("SHA256:{}...", &hex[..32]))
    }

    /// The text form, `SHA256:<32 hex digits>...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LegacyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LegacyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Sizes `keygen` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBits {
    /// RSA with a 2,048-bit modulus.
    Rsa2048,
    /// RSA with a 3,072-bit modulus.
    Rsa3072,
    /// RSA with a 4,096-bit modulus.
    Rsa4096,
}

impl KeyBits {
    /// The size for a bit count, if it is one of the three offered.
    pub fn from_bits(bits: u32) -> Result<Self> {
        match bits {
            2048 => Ok(KeyBits::Rsa2048),
            3072 => Ok(KeyBits::Rsa3072),
            4096 => Ok(KeyBits::Rsa4096),
            other => Err(Error::InvalidParameter(format!(
                "unsupported key size {other}: choose 2048, 3072 or 4096"
            ))),
        }
    }

    fn aws(self) -> KeySize {
        match self {
            KeyBits::Rsa2048 => KeySize::Rsa2048,
            KeyBits::Rsa3072 => KeySize::Rsa3072,
            KeyBits::Rsa4096 => KeySize::Rsa4096,
        }
    }
}

/// An RSA public key, held as its SubjectPublicKeyInfo DER, with its ML-KEM-768 half if it is a
/// hybrid recipient.
#[derive(Clone)]
pub struct PublicKey {
    spki: Vec<u8>,
    fingerprint: Fingerprint,
    bits: usize,
    /// Boxed: an ML-KEM key is large, and most keys have none.
    pq: Option<Box<MlKemPublicKey>>,
}

impl PublicKey {
    /// From DER: SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey`.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let parsed = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|e| Error::KeyRejected {
            what: "public key".into(),
            reason: e.to_string(),
        })?;
        let spki: PublicKeyX509Der<'static> = parsed
            .as_der()
            .map_err(|_| Error::Crypto("encoding a public key as SubjectPublicKeyInfo"))?;
        Self::from_spki(spki.as_ref().to_vec())
    }

    fn from_spki(spki: Vec<u8>) -> Result<Self> {
        let bits = PublicEncryptingKey::from_der(&spki)
            .map_err(|e| Error::KeyRejected {
                what: "public key".into(),
                reason: e.to_string(),
            })?
            .key_size_bits();
        if bits < MIN_KEY_BITS {
            return Err(Error::KeyRejected {
                what: "public key".into(),
                reason: format!(
                    "{bits}-bit RSA is too small; pgseal needs {MIN_KEY_BITS} bits or more"
                ),
            });
        }
        Ok(PublicKey {
            fingerprint: Fingerprint::of_spki_der(&spki),
            spki,
            bits,
            pq: None,
        })
    }

    /// This RSA key with `pq` as its ML-KEM-768 half: a hybrid recipient.
    pub fn with_pq(mut self, pq: MlKemPublicKey) -> Self {
        self.pq = Some(Box::new(pq));
        self
    }

    /// The ML-KEM-768 half, if this is a hybrid recipient.
    pub fn pq(&self) -> Option<&MlKemPublicKey> {
        self.pq.as_deref()
    }

    /// The fingerprint of the ML-KEM-768 half, if there is one.
    pub fn pq_fingerprint(&self) -> Option<Fingerprint> {
        self.pq.as_deref().map(MlKemPublicKey::fingerprint)
    }

    /// From PEM text: `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1), optionally followed by an
    /// ML-KEM-768 `PUBLIC KEY` block (a hybrid recipient).
    pub fn from_pem(text: &str) -> Result<Self> {
        let mut blocks = pem_blocks(text)?.into_iter();
        let (label, der) = blocks.next().ok_or_else(no_pem_block)?;
        let key = Self::from_pem_block(&label, &der)?;
        match (blocks.next(), blocks.next()) {
            (None, _) => Ok(key),
            (Some((label, der)), None) if label == "PUBLIC KEY" && is_ml_kem_768(&der) => {
                Ok(key.with_pq(MlKemPublicKey::from_spki_der(&der)?))
            }
            _ => Err(Error::KeyRejected {
                what: "public key".into(),
                reason: "after the RSA key, only one ML-KEM-768 public key may follow".into(),
            }),
        }
    }

    fn from_pem_block(label: &str, der: &[u8]) -> Result<Self> {
        match label {
            "PUBLIC KEY" if is_ml_kem_768(der) => Err(Error::KeyRejected {
                what: "public key".into(),
                reason: "an ML-KEM-768 key alone is not a recipient: it goes after an RSA key, \
                         in the same file"
                    .into(),
            }),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Self::from_der(der),
            "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" | "RSA PRIVATE KEY" => {
                Err(Error::KeyRejected {
                    what: "public key".into(),
                    reason: "this is a private key; pass the public half (NAME.pub.pem)".into(),
                })
            }
            other => Err(Error::KeyRejected {
                what: "public key".into(),
                reason: format!("unexpected PEM block `{other}`"),
            }),
        }
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), 64-column lines, LF endings; for a hybrid
    /// recipient, the ML-KEM-768 key follows in a second block.
    pub fn to_pem(&self) -> String {
        let pem = |der: &[u8]| {
            pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, der)
                .expect("PEM encoding of DER bytes cannot fail")
        };
        let mut out = pem(&self.spki);
        if let Some(pq) = &self.pq {
            out.push_str(&pem(pq.spki_der()));
        }
        out
    }

    /// The key as SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key's fingerprint (SHA-256 of its SubjectPublicKeyInfo DER).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The legacy fingerprint of this key's canonical PEM (what the old system stored for keys it
    /// made, since it wrote the same PEM layout).
    pub fn legacy_fingerprint(&self) -> LegacyFingerprint {
        LegacyFingerprint::of_pem_text(&self.to_pem())
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Modulus length in bytes: the length of every signature and wrapped key this key makes.
    pub fn modulus_len(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) of a file key.
    pub fn wrap_file_key(&self, key: &FileKey) -> Result<Vec<u8>> {
        let oaep = PublicEncryptingKey::from_der(&self.spki)
            .ok()
            .and_then(|k| OaepPublicEncryptingKey::new(k).ok())
            .ok_or(Error::Crypto("loading a public key for OAEP"))?;
        let mut out = vec![0u8; oaep.ciphertext_size()];
        let len = oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, key.expose(), &mut out, None)
            .map_err(|_| Error::Crypto("RSA-OAEP encryption"))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Verifies an RSA-PSS-SHA-256 signature over `message`.
    pub fn verify_pss(&self, salt: PssSalt, message: &[u8], signature: &[u8]) -> bool {
        let params: &'static RsaParameters = match salt {
            PssSalt::Digest => PSS_VERIFY_V2,
            PssSalt::Max => &PSS_VERIFY_LEGACY,
        };
        UnparsedPublicKey::new(params, &self.spki)
            .verify(message, signature)
            .is_ok()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && self.pq_fingerprint() == other.pq_fingerprint()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(RSA-{}, {}", self.bits, self.fingerprint)?;
        if let Some(pq) = &self.pq {
            write!(f, " + ML-KEM-768 {}", pq.fingerprint())?;
        }
        f.write_str(")")
    }
}

/// An RSA private key, with an ML-KEM-768 half for a hybrid recipient. Its PKCS#8 DER is zeroed
/// on drop; aws-lc frees (and clears) its own copy.
pub struct PrivateKey {
    pkcs8: SecretBytes,
    signer: KeyPair,
    decrypter: OaepPrivateDecryptingKey,
    public: PublicKey,
    pq: Option<Box<MlKemPrivateKey>>,
}

impl PrivateKey {
    /// A new key pair from the system CSPRNG.
    pub fn generate(bits: KeyBits) -> Result<Self> {
        let pair =
            KeyPair::generate(bits.aws()).map_err(|_| Error::Crypto("RSA key generation"))?;
        let der: Pkcs8V1Der<'static> = pair
            .as_der()
            .map_err(|_| Error::Crypto("encoding a new key as PKCS#8"))?;
        Self::from_pkcs8_der(der.as_ref(), "new key")
    }

    /// A new hybrid key pair: RSA plus a fresh ML-KEM-768 half.
    pub fn generate_hybrid(bits: KeyBits) -> Result<Self> {
        Ok(Self::generate(bits)?.with_pq(MlKemPrivateKey::generate()?))
    }

    /// This RSA key with `pq` as its ML-KEM-768 half.
    pub fn with_pq(mut self, pq: MlKemPrivateKey) -> Self {
        self.public.pq = Some(Box::new(pq.public().clone()));
        self.pq = Some(Box::new(pq));
        self
    }

    /// The ML-KEM-768 half, if this is a hybrid key.
    pub fn pq(&self) -> Option<&MlKemPrivateKey> {
        self.pq.as_deref()
    }

    /// From unencrypted PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8], what: &str) -> Result<Self> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| Error::KeyRejected {
            what: what.to_owned(),
            reason: e.to_string(),
        };
        let signer = KeyPair::from_pkcs8(der).map_err(rejected)?;
        let decrypter = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(rejected)
            .and_then(|k| {
                OaepPrivateDecryptingKey::new(k).map_err(|_| Error::Crypto("preparing RSA-OAEP"))
            })?;
        let public = PublicKey::from_der(signer.public_key().as_ref())?;
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(der.to_vec()),
            signer,
            decrypter,
            public,
            pq: None,
        })
    }

    /// From PEM text in any accepted private-key form, optionally followed by the key's
    /// ML-KEM-768 half in a second block (a hybrid key; encrypted under the same password).
    /// `password` is called only when a block is encrypted, and at most once, so a plain key
    /// never prompts. `what` names the key in errors (a path, a role).
    pub fn from_pem(
        text: &str,
        what: &str,
        password: impl FnOnce() -> Result<Password>,
    ) -> Result<Self> {
        if text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(Error::KeyRejected {
                what: what.to_owned(),
                reason: "traditional OpenSSL key encryption is not supported; convert it with \
                         `openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW`"
                    .into(),
            });
        }
        let mut password = LazyPassword {
            ask: Some(Box::new(password)),
            got: None,
        };
        let mut blocks = pem_blocks(text)?.into_iter();
        let (label, der) = blocks.next().ok_or_else(no_pem_block)?;
        let key = Self::from_pem_block(&label, &der, what, &mut password)?;
        match (blocks.next(), blocks.next()) {
            (None, _) => Ok(key),
            (Some((label, der)), None)
                if label == "ENCRYPTED PRIVATE KEY" || label == "PRIVATE KEY" =>
            {
                let plain = pkcs8_plain(&label, &der, what, &mut password)?;
                if !is_ml_kem_768(&plain) {
                    return Err(Error::KeyRejected {
                        what: what.to_owned(),
                        reason: "the second key in the file is not ML-KEM-768".into(),
                    });
                }
                Ok(key.with_pq(MlKemPrivateKey::from_pkcs8_der(&plain, what)?))
            }
            _ => Err(Error::KeyRejected {
                what: what.to_owned(),
                reason: "after the RSA key, only one ML-KEM-768 private key may follow".into(),
            }),
        }
    }

    fn from_pem_block(
        label: &str,
        der: &[u8],
        what: &str,
        password: &mut LazyPassword<'_>,
    ) -> Result<Self> {
        match label {
            "ENCRYPTED PRIVATE KEY" | "PRIVATE KEY" => {
                let plain = pkcs8_plain(label, der, what, password)?;
                if is_ml_kem_768(&plain) {
                    return Err(Error::KeyRejected {
                        what: what.to_owned(),
                        reason: "an ML-KEM-768 key alone cannot sign or be a recipient: it goes \
                                 after an RSA key, in the same file"
                            .into(),
                    });
                }
                Self::from_pkcs8_der(&plain, what)
            }
            "RSA PRIVATE KEY" => {
                let pair = KeyPair::from_der(der).map_err(|e| Error::KeyRejected {
                    what: what.to_owned(),
                    reason: e.to_string(),
                })?;
                let pkcs8: Pkcs8V1Der<'static> = pair
                    .as_der()
                    .map_err(|_| Error::Crypto("re-encoding a PKCS#1 key as PKCS#8"))?;
                Self::from_pkcs8_der(pkcs8.as_ref(), what)
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(Error::KeyRejected {
                what: what.to_owned(),
                reason: "this is a public key; a private key is needed here (NAME.key.pem)".into(),
            }),
            other => Err(Error::KeyRejected {
                what: what.to_owned(),
                reason: format!("unexpected PEM block `{other}`"),
            }),
        }
    }

    /// Encrypted PKCS#8 PEM under `password` (PBKDF2-HMAC-SHA256 × 600,000, AES-256-CBC); for a
    /// hybrid key, the ML-KEM-768 half follows in a second block under the same password.
    pub fn to_encrypted_pem(&self, password: &Password) -> Result<Zeroizing<String>> {
        let mut out = encrypted_pkcs8_pem(&self.pkcs8, password)?;
        if let Some(pq) = &self.pq {
            out.push_str(&encrypted_pkcs8_pem(&pq.to_pkcs8_der(), password)?);
        }
        Ok(out)
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The fingerprint of the public half.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint
    }

    /// RSA-PSS-SHA-256 signature over `message`.
    pub fn sign_pss(&self, salt: PssSalt, message: &[u8]) -> Result<Vec<u8>> {
        let encoding: &'static RsaSignatureEncoding = match salt {
            PssSalt::Digest => PSS_SIGN_V2,
            PssSalt::Max => &PSS_SIGN_LEGACY,
        };
        let mut sig = vec![0u8; self.signer.public_modulus_len()];
        self.signer
            .sign(
                encoding,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut sig,
            )
            .map_err(|_| Error::Crypto("RSA-PSS signing"))?;
        Ok(sig)
    }

    /// RSA-OAEP unwrap of a file key addressed to this key.
    pub fn unwrap_file_key(&self, wrapped: &[u8]) -> Result<FileKey> {
        let mut out = Zeroizing::new(vec![0u8; self.decrypter.min_output_size()]);
        let key = self
            .decrypter
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .map_err(|_| Error::SessionKeyUnwrap)?;
        FileKey::from_slice(key)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.public)
    }
}

/// A key file's password, asked for when the first encrypted block needs it and then kept for the
/// next block (a hybrid key's two blocks share it).
struct LazyPassword<'a> {
    ask: Option<Box<dyn FnOnce() -> Result<Password> + 'a>>,
    got: Option<Password>,
}

impl LazyPassword<'_> {
    fn get(&mut self) -> Result<&Password> {
        if let Some(ask) = self.ask.take() {
            self.got = Some(ask()?);
        }
        self.got
            .as_ref()
            .ok_or(Error::Crypto("a failed password prompt is not asked again"))
    }
}

/// Encrypted PKCS#8 PEM of plain PKCS#8 DER (PBKDF2-HMAC-SHA256 × 600,000, AES-256-CBC).
fn encrypted_pkcs8_pem(der: &[u8], password: &Password) -> Result<Zeroizing<String>> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    fill_random(&mut salt)?;
    fill_random(&mut iv)?;
    let params = pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PBKDF2_ROUNDS, &salt, iv)
        .map_err(|_| Error::Crypto("PBES2 parameters"))?;
    let info = pkcs8::PrivateKeyInfoRef::try_from(der)
        .map_err(|_| Error::Crypto("re-reading our own PKCS#8"))?;
    let doc = info
        .encrypt_with_params(params, password.as_bytes())
        .map_err(|_| Error::Crypto("encrypting a private key"))?;
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|_| Error::Crypto("PEM-encoding a private key"))
}

/// The plain PKCS#8 DER of a `PRIVATE KEY` or `ENCRYPTED PRIVATE KEY` block.
fn pkcs8_plain(
    label: &str,
    der: &[u8],
    what: &str,
    password: &mut LazyPassword<'_>,
) -> Result<SecretBytes> {
    if label == "PRIVATE KEY" {
        return Ok(Zeroizing::new(der.to_vec()));
    }
    let info =
        pkcs8::EncryptedPrivateKeyInfoRef::try_from(der).map_err(|e| Error::KeyRejected {
            what: what.to_owned(),
            reason: format!("not a valid encrypted PKCS#8 key: {e}"),
        })?;
    let password = password.get()?;
    let plain = info
        .decrypt(password.as_bytes())
        .map_err(|_| Error::WrongPassword(what.to_owned()))?;
    Ok(Zeroizing::new(plain.as_bytes().to_vec()))
}

/// The ability to recover a file key from a wrapped copy. A private key in memory is one; a
/// remote key-custody service can be another, without the rest of the code changing.
pub trait Identity {
    /// The fingerprint of the public key whose wrappings this identity opens.
    fn fingerprint(&self) -> Fingerprint;
    /// Recovers a file key from its RSA-OAEP wrapping to this identity (for a hybrid stanza, the
    /// 32-byte RSA secret, which travels exactly like a file key).
    fn unwrap_file_key(&self, wrapped: &[u8]) -> Result<FileKey>;
    /// The fingerprint of this identity's ML-KEM-768 half, if it is a hybrid key.
    fn pq_fingerprint(&self) -> Option<Fingerprint> {
        None
    }
    /// ML-KEM-768 decapsulation with this identity's post-quantum half.
    fn decapsulate(&self, _ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        Err(Error::Crypto("this identity has no ML-KEM-768 half"))
    }
    /// Recovers the file key from a stanza addressed to this identity (FORMAT.md §6, §6a). The
    /// default does it with the methods above; an identity that already knows the file key (a
    /// custody service's answer) returns that instead.
    fn unwrap_stanza(&self, stanza: &crate::v2::Stanza) -> Result<FileKey> {
        stanza.unwrap_with(self)
    }
}

impl Identity for PrivateKey {
    fn fingerprint(&self) -> Fingerprint {
        PrivateKey::fingerprint(self)
    }

    fn unwrap_file_key(&self, wrapped: &[u8]) -> Result<FileKey> {
        PrivateKey::unwrap_file_key(self, wrapped)
    }

    fn pq_fingerprint(&self) -> Option<Fingerprint> {
        self.public.pq_fingerprint()
    }

    fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        match &self.pq {
            Some(pq) => pq.decapsulate(ciphertext),
            None => Err(Error::Crypto("this key has no ML-KEM-768 half")),
        }
    }
}

/// A creator's signing key: a private key at hand, or one held elsewhere (a custody service)
/// that signs on request, so that the private half never enters the caller's process.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The signer's public key.
    fn public(&self) -> &PublicKey;
    /// An RSA-PSS (SHA-256, MGF1-SHA-256) signature over `message`.
    fn sign_pss(&self, salt: PssSalt, message: &[u8]) -> Result<Vec<u8>>;
}

impl Signer for PrivateKey {
    fn public(&self) -> &PublicKey {
        PrivateKey::public(self)
    }

    fn sign_pss(&self, salt: PssSalt, message: &[u8]) -> Result<Vec<u8>> {
        PrivateKey::sign_pss(self, salt, message)
    }
}

/// True when PEM text holds a password-protected private key.
pub fn pem_is_encrypted(text: &str) -> bool {
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

/// The PEM blocks of a key file, in order (at most three: a caller accepts two at most and
/// reports a third). Text around the blocks is tolerated (OpenSSL writes "Bag Attributes"
/// etc.), and so are CRLF endings. The DER is zeroed when dropped: it may be a private key.
fn pem_blocks(text: &str) -> Result<Vec<(String, SecretBytes)>> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        if blocks.len() == 3 {
            break;
        }
        let block = &rest[begin..];
        let end_marker = block.find("-----END ").ok_or_else(|| Error::KeyRejected {
            what: "key file".into(),
            reason: "PEM block has no END line".into(),
        })?;
        let end = block[end_marker..]
            .find('\n')
            .map(|i| end_marker + i + 1)
            .unwrap_or(block.len());
        let normalized = Zeroizing::new(block[..end].replace("\r\n", "\n"));
        let (label, der) =
            pkcs8::der::pem::decode_vec(normalized.as_bytes()).map_err(|e| Error::KeyRejected {
                what: "key file".into(),
                reason: format!("bad PEM: {e}"),
            })?;
        blocks.push((label.to_owned(), Zeroizing::new(der)));
        rest = &block[end..];
    }
    Ok(blocks)
}

fn no_pem_block() -> Error {
    Error::KeyRejected {
        what: "key file".into(),
        reason: "no PEM block found (expected -----BEGIN ...-----)".into(),
    }
}
