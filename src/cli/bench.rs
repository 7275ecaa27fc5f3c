//! `scamscreen bench detect CORPUS`: time of one incremental scoring update, measured over
//! every corpus item fed in segments of a few words, as the call flow will feed it; in the same
//! run, the keyword baseline scoring the same transcript so far is the reference. Both wall
//! time and the thread's CPU time are reported: on a busy box the wall time's tail is the
//! scheduler's, the CPU time is the work.

use std::path::PathBuf;
use std::time::Instant;

use scamscreen::detect::baseline::KeywordBaseline;
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
        /// The keyword baseline timed as the reference.
        #[arg(long, default_value = "tests/corpus/baseline_keywords.toml")]
        baseline: PathBuf,
        #[command(flatten)]
        rules: crate::cli::detect::RuleArgs,
    },
    /// Time to verdict of screened calls, one at a time and concurrent (real model, loopback).
    Screening(crate::cli::bench_screening::ScreeningBenchArgs),
    /// Bridged calls relayed: loss, added delay, CPU per call (real scamscreen, loopback).
    Relay(crate::cli::bench_relay::RelayBenchArgs),
    /// Listening time per outcome, extended listening against a fixed window (real model).
    Listening(crate::cli::bench_listening::ListeningBenchArgs),
    /// Hostile network: TCP caps, a trunk flood, a withheld-call flood (real scamscreen).
    Hostile(crate::cli::bench_hostile::HostileBenchArgs),
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU time of the calling thread, in µs.
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// Wall and CPU µs of each call of `f`.
#[derive(Default)]
struct Timings {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Timings {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (t0, c0) = (Instant::now(), thread_cpu_us());
        let out = f();
        self.cpu.push(thread_cpu_us() - c0);
        self.wall.push(t0.elapsed().as_secs_f64() * 1e6);
        out
    }

    fn summary(mut self) -> serde_json::Value {
        self.wall.sort_by(f64::total_cmp);
        self.cpu.sort_by(f64::total_cmp);
        serde_json::json!({
            "p50_us": percentile(&self.wall, 0.5),
            "p99_us": percentile(&self.wall, 0.99),
            "max_us": self.wall.last().copied().unwrap_or(0.0),
            "mean_us": self.wall.iter().sum::<f64>() / self.wall.len().max(1) as f64,
            "cpu_p50_us": percentile(&self.cpu, 0.5),
            "cpu_p99_us": percentile(&self.cpu, 0.99),
        })
    }
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let (corpus, words, passes, baseline, rules) = match cmd {
        BenchCommand::Detect {
            corpus,
            words,
            passes,
            baseline,
            rules,
        } => (corpus, words, passes, baseline, rules),
        BenchCommand::Screening(args) => return crate::cli::bench_screening::run(args),
        BenchCommand::Relay(args) => return crate::cli::bench_relay::run(args),
        BenchCommand::Listening(args) => return crate::cli::bench_listening::run(args),
        BenchCommand::Hostile(args) => return crate::cli::bench_hostile::run(args),
    };
    let det = rules.detector()?;
    let reference = KeywordBaseline::load(&baseline)?;
    let items = crate::cli::detect::load_corpus(&corpus)?;
    let (mut ours, mut theirs) = (Timings::default(), Timings::default());
    let mut longest_words = 0;
    for _ in 0..passes {
        for item in &items {
            let all: Vec<&str> = item.text.split_whitespace().collect();
            longest_words = longest_words.max(all.len());
            let mut s = Screening::new(&det, item.lang.as_deref());
            let mut so_far = String::new();
            for (i, chunk) in all.chunks(words.max(1)).enumerate() {
                let text = chunk.join(" ");
                let start = (i * 1000) as u64;
                let v = ours.time(|| s.push_segment(&text, start, start + 1000))?;
                std::hint::black_box(v);
                so_far.push(' ');
                so_far.push_str(&text);
                let b = theirs.time(|| reference.action(&so_far, item.lang.as_deref()));
                std::hint::black_box(b);
            }
        }
    }
    let updates = ours.wall.len();
    println!(
        "{}",
        serde_json::json!({
            "updates": updates,
            "words_per_update": words,
            "longest_transcript_words": longest_words,
            "detector": ours.summary(),
            "keyword_baseline": theirs.summary(),
        })
    );
    Ok(())
}
