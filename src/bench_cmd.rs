//! `scamscreen bench detect CORPUS`: time of one incremental scoring update, measured over
//! every corpus item fed in segments of a few words, as the call flow will feed it.

use std::path::PathBuf;
use std::time::Instant;

use scamscreen::detect::Screening;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Scoring speed of the rule engine.
    Detect {
        /// Labelled corpus (JSON lines with text and lang).
        corpus: PathBuf,
        /// Words per transcript update.
        #[arg(long, default_value_t = 4)]
        words: usize,
        /// Passes over the corpus.
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[command(flatten)]
        rules: crate::detect_cmd::RuleArgs,
    },
    /// Time to verdict of screened calls, one at a time and concurrent (real model, loopback).
    Screening(crate::bench_screening::ScreeningBenchArgs),
    /// Bridged calls relayed: loss, added delay, CPU per call (real scamscreen, loopback).
    Relay(crate::bench_relay::RelayBenchArgs),
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let (corpus, words, passes, rules) = match cmd {
        BenchCommand::Detect {
            corpus,
            words,
            passes,
            rules,
        } => (corpus, words, passes, rules),
        BenchCommand::Screening(args) => return crate::bench_screening::run(args),
        BenchCommand::Relay(args) => return crate::bench_relay::run(args),
    };
    let det = rules.detector()?;
    let items = crate::detect_cmd::load_corpus(&corpus)?;
    let mut micros = Vec::new();
    let mut longest_words = 0;
    for _ in 0..passes {
        for item in &items {
            let all: Vec<&str> = item.text.split_whitespace().collect();
            longest_words = longest_words.max(all.len());
            let mut s = Screening::new(&det, item.lang.as_deref());
            for (i, chunk) in all.chunks(words.max(1)).enumerate() {
                let text = chunk.join(" ");
                let start = (i * 1000) as u64;
                let t0 = Instant::now();
                let v = s.push_segment(&text, start, start + 1000)?;
                micros.push(t0.elapsed().as_secs_f64() * 1e6);
                std::hint::black_box(v);
            }
        }
    }
    micros.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "updates": micros.len(),
            "words_per_update": words,
            "longest_transcript_words": longest_words,
            "p50_us": percentile(&micros, 0.5),
            "p99_us": percentile(&micros, 0.99),
            "max_us": micros.last().copied().unwrap_or(0.0),
            "mean_us": micros.iter().sum::<f64>() / micros.len().max(1) as f64,
        })
    );
    Ok(())
}
