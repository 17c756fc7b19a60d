//! `qfhe`: train a quantized network, export it as a TFHE circuit, and run it encrypted.

mod args;
mod arrays;
mod data;
mod deploy;
mod eval;
mod image;
mod import_cmd;
mod progress;
mod remote;
mod report;
mod table_chart;
mod table_cmd;
mod tabular;
mod train_cmd;

use clap::Parser;

fn main() {
    // The libraries report through `log` (e.g. fetching a dataset); show their messages.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            use std::io::Write;
            writeln!(buf, "{}", record.args())
        })
        .init();
    let cli = args::Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    match cli.command {
        args::Command::Train(a) => train_cmd::train(&a),
        args::Command::Export(a) => train_cmd::export(&a),
        args::Command::Eval(a) => eval::eval_command(&a),
        args::Command::Run(a) => eval::run_command(&a).map(drop),
        args::Command::Table(a) => table_cmd::table(&a),
        args::Command::Import(a) => import_cmd::import(&a).map(drop),
        args::Command::Keygen(a) => deploy::keygen(&a),
        args::Command::Encrypt(a) => deploy::encrypt(&a),
        args::Command::Infer(a) => deploy::infer(&a),
        args::Command::Decrypt(a) => deploy::decrypt(&a),
        args::Command::Serve(a) => remote::serve(&a),
        args::Command::Predict(a) => remote::predict(&a),
        args::Command::LoadTest(a) => remote::load_test(&a),
    }
}
