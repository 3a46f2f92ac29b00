//! The `fifo-broker` binary: arguments in, one exit code out.

use std::process::ExitCode;

fn main() -> ExitCode {
    fifo_broker::logging::init();
    match fifo_broker::run(std::env::args_os().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            fifo_broker::logging::fatal(&err);
            ExitCode::from(err.exit_code() as u8)
        }
    }
}
