//! The fake Okta org refuses what Okta refuses: a fake that only says yes proves nothing.
//! Client assertions and DPoP proofs are made here by hand, each wrong in one way.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay_testkit::okta_org::{OktaOrg, ServiceApp};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A P-256 key: its signing key, public PEM (SPKI) and JWK.
fn p256() -> (EncodingKey, String, Jwk) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    // SPKI for a P-256 key: a fixed prefix, then the uncompressed point.
    let mut spki = hex_prefix();
    spki.extend_from_slice(&point);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let jwk = Jwk {
        common: CommonParameters::default(),
        algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    };
    (EncodingKey::from_ec_der(pkcs8.as_ref()), pem, jwk)
}

/// The DER header of a P-256 SubjectPublicKeyInfo, before the 65-byte point.
fn hex_prefix() -> Vec<u8> {
    let hex = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

struct Setup {
    org: OktaOrg,
    app_key: EncodingKey,
    dpop_key: EncodingKey,
    dpop_jwk: Jwk,
    http: reqwest::Client,
}

async fn setup(dpop: bool) -> Setup {
    let org = OktaOrg::start().await;
    let (app_key, pem, _) = p256();
    org.register(ServiceApp {
        client_id: "0oaapp".into(),
        key_id: "kid".into(),
        public_key_pem: pem,
        dpop,
        scopes: vec!["okta.eventHooks.manage".into()],
    });
    let (dpop_key, _, dpop_jwk) = p256();
    Setup {
        org,
        app_key,
        dpop_key,
        dpop_jwk,
        http: hookrelay_testkit::http_client(),
    }
}

impl Setup {
    fn token_url(&self) -> String {
        format!("{}/oauth2/v1/token", self.org.url())
    }

    fn assertion(&self, change: impl Fn(&mut Value)) -> String {
        let mut claims = json!({
            "iss": "0oaapp", "sub": "0oaapp", "aud": self.token_url(),
            "iat": now(), "exp": now() + 300, "jti": uuid::Uuid::new_v4().to_string(),
        });
        change(&mut claims);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("kid".into());
        jsonwebtoken::encode(&header, &claims, &self.app_key).unwrap()
    }

    fn proof(&self, htm: &str, htu: &str, change: impl Fn(&mut Value)) -> String {
        let mut claims = json!({
            "htm": htm, "htu": htu, "iat": now(), "jti": uuid::Uuid::new_v4().to_string(),
        });
        change(&mut claims);
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.dpop_jwk.clone());
        jsonwebtoken::encode(&header, &claims, &self.dpop_key).unwrap()
    }

    /// The token endpoint's status, JSON and `DPoP-Nonce` for this assertion and proof.
    async fn ask(&self, assertion: &str, proof: Option<&str>) -> (u16, Value, Option<String>) {
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", "okta.eventHooks.manage"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ];
        let mut request = self.http.post(self.token_url()).form(&form);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let nonce = (answer.headers().get("dpop-nonce")).map(|v| v.to_str().unwrap().to_owned());
        (status, answer.json().await.unwrap(), nonce)
    }
}

#[tokio::test]
async fn the_token_endpoint_refuses_assertions_okta_would_refuse() {
    let s = setup(false).await;
    let (status, body, _) = s.ask(&s.assertion(|_| {}), None).await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("Bearer")),
        "{body}"
    );
    for (what, change) in [
        (
            "another audience",
            Box::new(|c: &mut Value| c["aud"] = "https://elsewhere/token".into())
                as Box<dyn Fn(&mut Value)>,
        ),
        (
            "expired",
            Box::new(|c: &mut Value| c["exp"] = (now() - 10).into()),
        ),
        (
            "another subject",
            Box::new(|c: &mut Value| c["sub"] = "0oaother".into()),
        ),
        (
            "an unknown client",
            Box::new(|c: &mut Value| c["iss"] = "0oaother".into()),
        ),
    ] {
        let (status, body, _) = s.ask(&s.assertion(change), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_client")),
            "{what}: {body}"
        );
    }
    // Signed with a key that is not the app's.
    let (other, _, _) = p256();
    let claims = json!({"iss": "0oaapp", "sub": "0oaapp", "aud": s.token_url(), "exp": now() + 60});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("kid".into());
    let forged = jsonwebtoken::encode(&header, &claims, &other).unwrap();
    let (status, body, _) = s.ask(&forged, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
}

#[tokio::test]
async fn dpop_needs_the_nonce_a_matching_htm_and_htu_and_a_fresh_jti() {
    let s = setup(true).await;
    let url = s.token_url();
    let (status, body, _) = s.ask(&s.assertion(|_| {}), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "no proof"
    );

    let (status, body, nonce) = s
        .ask(&s.assertion(|_| {}), Some(&s.proof("POST", &url, |_| {})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{body}"
    );
    let nonce = nonce.expect("a DPoP-Nonce header");
    let with_nonce = |c: &mut Value| c["nonce"] = nonce.clone().into();

    for (what, proof) in [
        ("htm", s.proof("GET", &url, with_nonce)),
        ("htu", s.proof("POST", &format!("{url}x"), with_nonce)),
        (
            "iat",
            s.proof("POST", &url, |c| {
                c["nonce"] = nonce.clone().into();
                c["iat"] = (now() - 3600).into();
            }),
        ),
    ] {
        let (status, body, _) = s.ask(&s.assertion(|_| {}), Some(&proof)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {body}"
        );
    }

    let proof = s.proof("POST", &url, with_nonce);
    let (status, body, _) = s.ask(&s.assertion(|_| {}), Some(&proof)).await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, body, _) = s.ask(&s.assertion(|_| {}), Some(&proof)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "a used jti: {body}"
    );

    // The API: the token only with a proof for this call, of the key it is bound to.
    let hooks = format!("{}/api/v1/eventHooks", s.org.url());
    let ath = {
        let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        URL_SAFE_NO_PAD.encode(hash.as_ref())
    };
    let call = |scheme: &str, proof: Option<String>| {
        let mut request = s
            .http
            .get(&hooks)
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    let good = s.proof("GET", &hooks, |c| c["ath"] = ath.clone().into());
    assert_eq!(call("DPoP", Some(good)).await.unwrap().status(), 200);
    let cases = [
        ("as a Bearer token", "Bearer", None),
        ("without a proof", "DPoP", None),
        ("without ath", "DPoP", Some(s.proof("GET", &hooks, |_| {}))),
        (
            "for another method",
            "DPoP",
            Some(s.proof("POST", &hooks, |c| c["ath"] = ath.clone().into())),
        ),
    ];
    for (what, scheme, proof) in cases {
        let answer = call(scheme, proof).await.unwrap();
        assert_eq!(answer.status(), 401, "{what}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["errorCode"], "E0000011", "{what}: Okta's error shape");
    }
}
