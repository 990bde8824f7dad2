//! A bare axum hello-world: the reference `bench/server.sh` measures
//! tesserad against (same machine, same load generator, same run).
//!
//! `cargo run --release -p tesserad --example hello_axum -- 127.0.0.1:7460`

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7460)));
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("hello_axum listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
