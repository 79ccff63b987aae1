//! The post-quantum half of a hybrid recipient: ML-KEM-768 (FIPS 203) keys in their standard
//! encodings, and the hybrid wrap of a file key under RSA-OAEP *and* ML-KEM-768 (FORMAT.md §6a).
//!
//! Keys are read and written in the IETF LAMPS encodings that OpenSSL 3.5 and Python's
//! `cryptography` use: a SubjectPublicKeyInfo holding the 1,184-byte encapsulation key, and a
//! PKCS#8 key holding the 64-byte seed (`d || z`) from which FIPS 203 derives the key pair. Both
//! encodings have one fixed length for ML-KEM-768, so they are matched against their fixed DER
//! prefixes rather than parsed: no length field in them can steer the reader.
//!
//! ML-KEM itself is RustCrypto's `ml-kem` (aws-lc-rs cannot load a key from its seed).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use ml_kem::{Decapsulate, Encapsulate, KeyExport, TryKeyInit, ml_kem_768};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::Fingerprint;
use crate::secret::{FileKey, SecretBytes, fill_random};

/// Bytes of an ML-KEM-768 encapsulation (public) key.
pub const PUBLIC_KEY_LEN: usize = 1184;
/// Bytes of an ML-KEM-768 ciphertext.
pub const CIPHERTEXT_LEN: usize = 1088;
/// Bytes of the seed an ML-KEM key pair is derived from.
pub const SEED_LEN: usize = 64;
/// Bytes of the AES-256-GCM wrap of the file key in a hybrid stanza (key and tag).
pub const WRAP_LEN: usize = 48;

/// `SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.4.2 }, BIT STRING (0 unused bits) || ek }`.
const SPKI_PREFIX: [u8; 22] = [
    0x30, 0x82, 0x04, 0xb2, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04,
    0x02, 0x03, 0x82, 0x04, 0xa1, 0x00,
];
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID }, OCTET STRING { [0] IMPLICIT OCTET STRING seed } }`.
const PKCS8_SEED_PREFIX: [u8; 22] = [
    0x30, 0x54, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
    0x04, 0x02, 0x04, 0x42, 0x80, 0x40,
];
/// The "both" form (what OpenSSL 3.5 writes by default): `OCTET STRING { SEQUENCE { OCTET STRING
/// seed, OCTET STRING expandedKey } }`; the seed is used and the expanded key checked against it.
const PKCS8_BOTH_PREFIX: [u8; 30] = [
    0x30, 0x82, 0x09, 0xbe, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
    0x03, 0x04, 0x04, 0x02, 0x04, 0x82, 0x09, 0xaa, 0x30, 0x82, 0x09, 0xa6, 0x04, 0x40,
];
const PKCS8_BOTH_EXPANDED: [u8; 4] = [0x04, 0x82, 0x09, 0x60];
const EXPANDED_LEN: usize = 2400;
/// Where the encapsulation key sits inside the expanded decapsulation key (FIPS 203 §7.1).
const EXPANDED_EK: std::ops::Range<usize> = 1152..1152 + PUBLIC_KEY_LEN;
/// The algorithm identifier's OID bytes, to tell an ML-KEM key from an RSA one in a PEM block.
const OID_BYTES: [u8; 11] = [
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, 0x02,
];

const HYBRID_INFO: &[u8] = b"pgseal v2 hybrid stanza\0";

/// Whether DER (a SubjectPublicKeyInfo or a PKCS#8 key) names ML-KEM-768 as its algorithm.
pub fn is_ml_kem_768(der: &[u8]) -> bool {
    der.get(..40)
        .is_some_and(|head| head.windows(OID_BYTES.len()).any(|w| w == OID_BYTES))
}

/// An ML-KEM-768 encapsulation (public) key.
#[derive(Clone)]
pub struct MlKemPublicKey {
    spki: Vec<u8>,
    fingerprint: Fingerprint,
    key: ml_kem_768::EncapsulationKey,
}

impl MlKemPublicKey {
    /// From its SubjectPublicKeyInfo DER.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let ek = der
            .strip_prefix(&SPKI_PREFIX)
            .filter(|ek| ek.len() == PUBLIC_KEY_LEN)
            .ok_or_else(|| rejected("not an ML-KEM-768 SubjectPublicKeyInfo"))?;
        Self::from_encapsulation_key(ek)
    }

    fn from_encapsulation_key(ek: &[u8]) -> Result<Self> {
        // FIPS 203 §7.2's modulus check: every coefficient below q.
        let key = ml_kem_768::EncapsulationKey::new_from_slice(ek)
            .map_err(|_| rejected("the ML-KEM-768 public key fails the FIPS 203 modulus check"))?;
        let spki = [SPKI_PREFIX.as_slice(), ek].concat();
        Ok(MlKemPublicKey {
            fingerprint: Fingerprint::of_spki_der(&spki),
            spki,
            key,
        })
    }

    /// The SubjectPublicKeyInfo DER (1,206 bytes).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER, as for RSA keys.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A fresh shared secret and the ciphertext that carries it to the private key's holder.
    pub fn encapsulate(&self) -> (Vec<u8>, Zeroizing<[u8; 32]>) {
        let (ciphertext, shared) = self.key.encapsulate();
        (ciphertext.to_vec(), Zeroizing::new(shared.into()))
    }
}

impl fmt::Debug for MlKemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MlKemPublicKey(ML-KEM-768, {})", self.fingerprint)
    }
}

/// An ML-KEM-768 decapsulation (private) key, kept as its seed. Both are cleared when dropped.
pub struct MlKemPrivateKey {
    seed: Zeroizing<[u8; SEED_LEN]>,
    key: ml_kem_768::DecapsulationKey,
    public: MlKemPublicKey,
}

impl MlKemPrivateKey {
    /// A new key pair from a seed drawn from the system CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        fill_random(seed.as_mut())?;
        Self::from_seed(seed)
    }

    fn from_seed(seed: Zeroizing<[u8; SEED_LEN]>) -> Result<Self> {
        let key = ml_kem_768::DecapsulationKey::from_seed((*seed).into());
        let ek = key.encapsulation_key().to_bytes();
        let public = MlKemPublicKey::from_encapsulation_key(&ek)?;
        Ok(MlKemPrivateKey { seed, key, public })
    }

    /// From unencrypted PKCS#8 DER in the seed form or the seed-and-expanded ("both") form. `what`
    /// names the key in errors.
    pub fn from_pkcs8_der(der: &[u8], what: &str) -> Result<Self> {
        let bad = |reason: &str| Error::KeyRejected {
            what: what.to_owned(),
            reason: reason.to_owned(),
        };
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        if let Some(rest) = der.strip_prefix(&PKCS8_SEED_PREFIX) {
            seed.copy_from_slice(
                (rest.len() == SEED_LEN)
                    .then_some(rest)
                    .ok_or_else(|| bad("an ML-KEM-768 seed is 64 bytes"))?,
            );
            return Self::from_seed(seed);
        }
        let (seed_bytes, expanded) = der
            .strip_prefix(&PKCS8_BOTH_PREFIX)
            .and_then(|rest| rest.split_at_checked(SEED_LEN))
            .and_then(|(seed, rest)| Some((seed, rest.strip_prefix(&PKCS8_BOTH_EXPANDED)?)))
            .filter(|(_, expanded)| expanded.len() == EXPANDED_LEN)
            .ok_or_else(|| {
                bad(
                    "not an ML-KEM-768 private key in the seed or seed-and-expanded form \
                     (an expanded-only key cannot be used: re-export it with its seed)",
                )
            })?;
        seed.copy_from_slice(seed_bytes);
        let key = Self::from_seed(seed)?;
        if expanded[EXPANDED_EK] != key.public.spki[SPKI_PREFIX.len()..] {
            return Err(bad(
                "the key's expanded form does not belong to its seed (a damaged key)",
            ));
        }
        Ok(key)
    }

    /// Unencrypted PKCS#8 DER in the seed form (86 bytes).
    pub fn to_pkcs8_der(&self) -> SecretBytes {
        Zeroizing::new([PKCS8_SEED_PREFIX.as_slice(), self.seed.as_slice()].concat())
    }

    /// The public half.
    pub fn public(&self) -> &MlKemPublicKey {
        &self.public
    }

    /// Recovers the shared secret from an ML-KEM-768 ciphertext (FIPS 203 decapsulation: a wrong
    /// ciphertext yields a pseudo-random secret, which the hybrid wrap's tag then refuses).
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let shared = self
            .key
            .decapsulate_slice(ciphertext)
            .map_err(|_| Error::SessionKeyUnwrap)?;
        Ok(Zeroizing::new(shared.into()))
    }
}

impl fmt::Debug for MlKemPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MlKemPrivateKey(ML-KEM-768, {}, <redacted>)",
            self.public.fingerprint
        )
    }
}

fn rejected(reason: &str) -> Error {
    Error::KeyRejected {
        what: "ML-KEM-768 public key".into(),
        reason: reason.to_owned(),
    }
}

/// The parts of a hybrid stanza that are not fingerprints (FORMAT.md §6a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridWrap {
    /// `C_rsa`: RSA-OAEP of the 32-byte RSA secret.
    pub rsa_ciphertext: Vec<u8>,
    /// `C_pq`: the ML-KEM-768 ciphertext.
    pub pq_ciphertext: Vec<u8>,
    /// `W`: AES-256-GCM of the file key under the combined key, then its tag.
    pub wrapped_key: [u8; WRAP_LEN],
}

/// Wraps `file_key` to a hybrid recipient: `rsa_wrap` RSA-OAEP-encrypts the fresh RSA secret to
/// the recipient's RSA key, `pq` is its ML-KEM half.
pub(crate) fn hybrid_wrap(
    rsa: Fingerprint,
    rsa_wrap: impl FnOnce(&FileKey) -> Result<Vec<u8>>,
    pq: &MlKemPublicKey,
    file_key: &FileKey,
) -> Result<HybridWrap> {
    let rsa_secret = FileKey::generate()?;
    let rsa_ciphertext = rsa_wrap(&rsa_secret)?;
    let (pq_ciphertext, pq_secret) = pq.encapsulate();
    let kek = combine(
        &rsa_secret,
        &pq_secret,
        &rsa,
        &pq.fingerprint(),
        &rsa_ciphertext,
        &pq_ciphertext,
    )?;
    let mut sealed = file_key.expose().to_vec();
    kek.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::empty(),
        &mut sealed,
    )
    .map_err(|_| Error::Crypto("AES-256-GCM wrap of the file key"))?;
    let wrapped_key = sealed
        .try_into()
        .map_err(|_| Error::Crypto("the hybrid wrap is 48 bytes"))?;
    Ok(HybridWrap {
        rsa_ciphertext,
        pq_ciphertext,
        wrapped_key,
    })
}

/// Recovers the file key from a hybrid wrap, given both halves' secrets.
pub(crate) fn hybrid_unwrap(
    wrap: &HybridWrap,
    (rsa, pq): (&Fingerprint, &Fingerprint),
    rsa_secret: &FileKey,
    pq_secret: &[u8; 32],
) -> Result<FileKey> {
    let kek = combine(
        rsa_secret,
        pq_secret,
        rsa,
        pq,
        &wrap.rsa_ciphertext,
        &wrap.pq_ciphertext,
    )?;
    let mut buf = Zeroizing::new(wrap.wrapped_key.to_vec());
    let key = kek
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut buf,
        )
        .map_err(|_| Error::SessionKeyUnwrap)?;
    FileKey::from_slice(key)
}

struct KekLen;

impl hkdf::KeyType for KekLen {
    fn len(&self) -> usize {
        32
    }
}

/// `KEK = HKDF-SHA256(salt = empty, IKM = s_rsa || s_pq, info = label || F_rsa || F_pq || C_rsa
/// || C_pq)`: the concatenation combiner (FORMAT.md §6a says why).
fn combine(
    rsa_secret: &FileKey,
    pq_secret: &[u8; 32],
    rsa: &Fingerprint,
    pq: &Fingerprint,
    rsa_ciphertext: &[u8],
    pq_ciphertext: &[u8],
) -> Result<LessSafeKey> {
    let ikm = Zeroizing::new([rsa_secret.expose().as_slice(), pq_secret].concat());
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(&ikm);
    let info = [
        HYBRID_INFO,
        rsa.as_bytes(),
        pq.as_bytes(),
        rsa_ciphertext,
        pq_ciphertext,
    ];
    let mut kek = Zeroizing::new([0u8; 32]);
    prk.expand(&info, KekLen)
        .and_then(|okm| okm.fill(kek.as_mut()))
        .map_err(|_| Error::Crypto("HKDF expansion"))?;
    let key = UnboundKey::new(&AES_256_GCM, kek.as_slice())
        .map_err(|_| Error::Crypto("AES-256-GCM key"))?;
    Ok(LessSafeKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_encodings_and_decapsulates_what_its_public_half_encapsulates() {
        let key = MlKemPrivateKey::generate().unwrap();
        let der = key.to_pkcs8_der();
        assert_eq!(der.len(), 86);
        let again = MlKemPrivateKey::from_pkcs8_der(&der, "test").unwrap();
        assert_eq!(again.public().fingerprint(), key.public().fingerprint());
        let public = MlKemPublicKey::from_spki_der(key.public().spki_der()).unwrap();
        assert_eq!(public.spki_der().len(), 1206);
        let (ct, secret) = public.encapsulate();
        assert_eq!(ct.len(), CIPHERTEXT_LEN);
        assert_eq!(*again.decapsulate(&ct).unwrap(), *secret);
        assert!(is_ml_kem_768(&der) && is_ml_kem_768(public.spki_der()));
    }

    #[test]
    fn the_both_form_is_read_and_a_mismatched_expanded_key_refused() {
        let key = MlKemPrivateKey::generate().unwrap();
        #[allow(deprecated)] // the expanded form is exactly what this test needs to build
        let expanded = {
            use ml_kem::ExpandedKeyEncoding;
            key.key.to_expanded_bytes().to_vec()
        };
        let both = [
            PKCS8_BOTH_PREFIX.as_slice(),
            key.seed.as_slice(),
            &PKCS8_BOTH_EXPANDED,
            &expanded,
        ]
        .concat();
        let read = MlKemPrivateKey::from_pkcs8_der(&both, "both").unwrap();
        assert_eq!(read.public().fingerprint(), key.public().fingerprint());
        let mut wrong = both.clone();
        let at = PKCS8_BOTH_PREFIX.len() + SEED_LEN + 4 + EXPANDED_EK.start;
        wrong[at] ^= 1;
        let err = MlKemPrivateKey::from_pkcs8_der(&wrong, "both").unwrap_err();
        assert!(
            err.to_string().contains("does not belong to its seed"),
            "{err}"
        );
        for cut in [&der_cut(&both), &both[..both.len() - 1]] {
            assert!(MlKemPrivateKey::from_pkcs8_der(cut, "cut").is_err());
        }
    }

    fn der_cut(der: &[u8]) -> Vec<u8> {
        der[..40].to_vec()
    }
}
