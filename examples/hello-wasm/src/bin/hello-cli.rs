//! A `wasi:cli/command` component (a plain `main`): a component of another world than
//! `wasi:http/proxy`, which Strata's `wasm` driver must reject with a clear message.

fn main() {
    println!("hello from a command component; Strata's wasm driver serves only wasi:http/proxy");
}
