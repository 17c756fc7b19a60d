//! `qfhe-server`: the HTTP inference server alone, without the trainer (same options as
//! `qfhe serve`).

use clap::Parser;

/// Serve a qfhe circuit over HTTP: clients register evaluation keys, send encrypted inputs and
/// get encrypted outputs back (API in docs/API.md).
#[derive(Parser, Debug)]
#[command(name = "qfhe-server", version, about)]
struct Cli {
    #[command(flatten)]
    serve: qfhe_server::cli::ServeArgs,
}

fn main() {
    let cli = Cli::parse();
    match qfhe_server::cli::run(&cli.serve, |line| eprintln!("{line}")) {
        Ok(()) => eprintln!("stopped"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
