//! The chaos soak against the real binary (see `soak/mod.rs` for what it
//! does and checks):
//!
//!   cargo bench --bench soak                   # 600 s
//!   cargo bench --bench soak -- --seconds 60 --seed 7 --rate 200
//!
//! Prints a summary table; exits 1 if any invariant broke.

#[path = "soak/mod.rs"]
mod soak;

fn main() {
    let opts = soak::options_from_args(env!("CARGO_BIN_EXE_fifo-broker").into());
    eprintln!(
        "soak: {} s, {} lines/s per writer, seed {}",
        opts.duration.as_secs(),
        opts.rate,
        opts.seed
    );
    let report = soak::run(&opts);
    print!("{}", report.table);
    for note in &report.notes {
        println!("note: {note}");
    }
    if report.failures.is_empty() {
        println!("every invariant held");
    } else {
        for f in &report.failures {
            println!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
