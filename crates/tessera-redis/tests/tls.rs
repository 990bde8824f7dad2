//! `rediss://`: a private redis-server with TLS on, its certificate signed
//! by a test CA made with rcgen.

mod common;

use std::time::Duration;

use common::{TempRedis, round_trip};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tessera_redis::{RedisConfig, RedisStore};

struct TestPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_pki() -> TestPki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Removes the certificate directory when the test ends, however it ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tls_server(pki: &TestPki) -> (TempRedis, RemoveOnDrop) {
    let dir = std::env::temp_dir().join(format!(
        "tessera-redis-tls-{}-{}",
        std::process::id(),
        common::free_port(u16::MAX)
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write pem");
        path.display().to_string()
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca_pem),
        write("cert.pem", &pki.cert_pem),
        write("key.pem", &pki.key_pem),
    );
    let port = common::free_port(u16::MAX);
    let port_text = port.to_string();
    // The plain port is off: only TLS is spoken.
    let server = TempRedis::start_on(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port_text,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    );
    (server, RemoveOnDrop(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_talk_tls_and_verify_the_server() {
    let pki = make_pki();
    let (server, _certificates) = tls_server(&pki);
    let url = format!("rediss://127.0.0.1:{}/0?prefix=tls:", server.port());

    let config = RedisConfig::from_url(&url)
        .expect("url")
        .tls_root_certificates(pki.ca_pem.clone().into_bytes());
    let store = RedisStore::connect_with(config).await.expect("TLS connect");
    round_trip(store, "validate over TLS").await;

    // The CA file can come from the URL too.
    let ca_file = server.dir().join("ca-from-url.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write ca");
    let from_url = format!("{url}&tls_ca_file={}", ca_file.display());
    let store = RedisStore::connect(&from_url)
        .await
        .expect("connect with tls_ca_file");
    store_roundtrip(&store).await;

    // A server whose certificate the client cannot verify is refused.
    let untrusted = RedisConfig::from_url(&url)
        .expect("url")
        .tls_root_certificates(make_pki().ca_pem.into_bytes())
        .connect_timeout(Duration::from_secs(2));
    assert!(
        RedisStore::connect_with(untrusted).await.is_err(),
        "an unverified server certificate must be refused"
    );
}

async fn store_roundtrip(store: &RedisStore) {
    use tessera_core::store::{Epochs, Records};
    store.ping().await.expect("ping over TLS");
    let before = store.global_epoch().await.expect("epoch");
    assert_eq!(store.bump_global_epoch().await.expect("bump"), before + 1);
}
