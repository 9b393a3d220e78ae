//! The `cardbridge` binary: parses the command line and hands over to the library.
use clap::Parser as _;

fn main() {
    let cli = cardbridge::cli::Cli::parse();
    std::process::exit(cardbridge::cli::run(cli));
}
