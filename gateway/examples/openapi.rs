//! Prints the gateway's OpenAPI document (`cargo run -p arus-gateway --example openapi`).
fn main() {
    println!("{:#}", arus_gateway::openapi_document());
}
