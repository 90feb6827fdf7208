//! The container shim as a binary of its own, for this crate's tests and benchmarks; a node
//! runs the same function as `strata container-shim`.

fn main() {
    std::process::exit(strata_container::shim::main_with_args(
        std::env::args().skip(1),
    ));
}
