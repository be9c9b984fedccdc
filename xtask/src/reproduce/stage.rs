//! Cached pipeline stages: each stage is one command whose outputs live in its own folder,
//! with a `stage.json` written (atomically) only after the command succeeded.
//!
//! A stage is skipped when its `stage.json` holds the same key: a hash of the command line,
//! the contents of its input files (configs) and the run ids of the stages it depends on.
//! Every run gets a fresh run id, so re-running a stage (because its output was deleted or
//! its config changed) re-runs everything after it. A stage whose key changed has its folder
//! cleared first (stale outputs); a stage killed mid-way has no `stage.json`, and its folder
//! is kept so resumable commands (per-image stages, training with `--resume`) go on where
//! they stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One command of the pipeline.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Unique name, e.g. `weaktr/train`.
    pub name: String,
    /// The stage's output folder (holds `stage.json`).
    pub dir: PathBuf,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Files whose contents enter the cache key (configs).
    pub inputs: Vec<PathBuf>,
    /// Names of earlier stages whose outputs this one reads.
    pub after: Vec<String>,
    /// Extra arguments appended when the folder holds a partial earlier run
    /// (e.g. `--resume`).
    pub resume_args: Vec<String>,
}

/// What `stage.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The cache key the outputs were made with.
    pub key: String,
    /// Fresh per run; downstream keys include it.
    pub run_id: String,
    /// Wall-clock seconds of the run.
    pub wall_s: f64,
    /// Peak resident memory of the command in MiB (Linux `VmHWM`), when it could be read.
    pub peak_rss_mib: Option<f64>,
}

/// How a stage ended in this invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Stage name.
    pub name: String,
    /// Its record.
    pub record: StageRecord,
    /// True when the outputs were reused.
    pub cached: bool,
}

/// How stage commands are started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChildOptions {
    /// `RAYON_NUM_THREADS` of each command (none: inherited). Chains of stages that run
    /// side by side each get their share of the cores.
    pub threads: Option<usize>,
    /// Send each command's stdout and stderr to `stage.log` in its folder instead of this
    /// terminal (chains running side by side would interleave their progress bars).
    pub log_to_file: bool,
}

/// Runs stages in order, remembering their records for the stages after them.
///
/// Independent chains of stages (one per method) run side by side on clones of one
/// pipeline ([`Pipeline::fork`], [`Pipeline::join`]).
#[derive(Debug, Default, Clone)]
pub struct Pipeline {
    records: HashMap<String, StageRecord>,
    outcomes: Vec<Outcome>,
    child: ChildOptions,
}

const RECORD: &str = "stage.json";

/// A command's output when [`ChildOptions::log_to_file`] is set.
pub const LOG: &str = "stage.log";

/// The key of the run under way in a folder without a record yet: a partial folder is
/// resumed only by the same key (a changed config or upstream clears it instead).
const PENDING: &str = "stage.pending";

fn read_pending(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(PENDING)).ok()
}

fn write_pending(dir: &Path, key: &str) -> Result<()> {
    let path = dir.join(PENDING);
    std::fs::write(&path, key).with_context(|| format!("writing {}", path.display()))
}

fn read_record(dir: &Path) -> Option<StageRecord> {
    let text = std::fs::read_to_string(dir.join(RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(dir: &Path, record: &StageRecord) -> Result<()> {
    let path = dir.join(RECORD);
    let tmp = dir.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(record)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Peak resident set size of a running process in MiB (`VmHWM` of /proc; Linux only).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outcomes so far, in order.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// A copy that knows every stage run so far, for a chain of stages run beside others;
    /// its commands start with `child`.
    pub fn fork(&self, child: ChildOptions) -> Self {
        Self {
            records: self.records.clone(),
            outcomes: Vec::new(),
            child,
        }
    }

    /// Takes over what a [`Pipeline::fork`] ran (its outcomes follow this pipeline's).
    pub fn join(&mut self, fork: Pipeline) {
        for outcome in fork.outcomes {
            self.records
                .insert(outcome.name.clone(), outcome.record.clone());
            self.outcomes.push(outcome);
        }
    }

    /// The cache key of `stage` given the records of the stages before it.
    pub fn key(&self, stage: &StageSpec) -> Result<String> {
        let mut hash = Sha256::new();
        hash.update(stage.name.as_bytes());
        hash.update([0]);
        let program = stage.program.file_name().unwrap_or_default();
        hash.update(program.as_encoded_bytes());
        for arg in &stage.args {
            hash.update([0]);
            hash.update(arg.as_bytes());
        }
        for input in &stage.inputs {
            let bytes = std::fs::read(input)
                .with_context(|| format!("stage {}: reading {}", stage.name, input.display()))?;
            hash.update([1]);
            hash.update(&bytes);
        }
        for upstream in &stage.after {
            let Some(record) = self.records.get(upstream) else {
                bail!(
                    "stage {} depends on {upstream}, which has not run",
                    stage.name
                );
            };
            hash.update([2]);
            hash.update(record.run_id.as_bytes());
        }
        Ok(format!("{:x}", hash.finalize()))
    }

    /// Runs `stage` unless its outputs are current; returns its outcome.
    pub fn run(&mut self, stage: &StageSpec) -> Result<Outcome> {
        let child = self.child.clone();
        self.run_with(stage, |args, key| execute(stage, args, key, &child, LOG))
    }

    /// Like [`Pipeline::run`], but the stage's work is `work` in this process (file
    /// plumbing, such as assembling a data folder from links); `stage.program` and
    /// `stage.args` only describe it (and enter the cache key).
    pub fn run_in_process(
        &mut self,
        stage: &StageSpec,
        work: impl FnOnce() -> Result<()>,
    ) -> Result<Outcome> {
        self.run_with(stage, |_, key| {
            println!("[{}] (in process) {}", stage.name, stage.args.join(" "));
            let start = Instant::now();
            work().with_context(|| {
                format!(
                    "stage {} failed; its folder {} is kept",
                    stage.name,
                    stage.dir.display()
                )
            })?;
            let wall_s = start.elapsed().as_secs_f64();
            println!("[{}] done in {wall_s:.1} s", stage.name);
            Ok(new_record(key, wall_s, None))
        })
    }

    /// Records `stage` as done when its outputs are current (a cached outcome) and returns
    /// true; returns false, running nothing, otherwise.
    pub fn reuse(&mut self, stage: &StageSpec) -> Result<bool> {
        let key = self.key(stage)?;
        match read_record(&stage.dir) {
            Some(record) if record.key == key => {
                println!("[{}] cached ({})", stage.name, stage.dir.display());
                self.records.insert(stage.name.clone(), record.clone());
                self.outcomes.push(Outcome {
                    name: stage.name.clone(),
                    record,
                    cached: true,
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Runs one shard of a per-image stage: `stage.args` plus `shard_args`, in the
    /// stage's folder, which is neither cleared nor marked done (shards share the folder,
    /// and the per-image command skips the images whose output exists). The un-sharded run
    /// that follows finds the folder partial, runs the command for what is left (nothing,
    /// once every shard ran) and writes `stage.json`. Stages after this one in the same
    /// invocation see a placeholder run id.
    pub fn run_shard(&mut self, stage: &StageSpec, shard_args: &[String]) -> Result<Outcome> {
        if self.reuse(stage)? {
            // Finished un-sharded already.
            return Ok(self.outcomes.last().expect("just pushed").clone());
        }
        if read_record(&stage.dir).is_some() {
            // Shards run at once and cannot clear a shared folder safely.
            bail!(
                "stage {}: {} holds outputs made with another config or from other inputs; \
                 delete it (or run without --shard) before running shards",
                stage.name,
                stage.dir.display()
            );
        }
        let key = self.key(stage)?;
        match read_pending(&stage.dir) {
            Some(pending) if pending != key => bail!(
                "stage {}: {} holds partial outputs made with another config or from other \
                 inputs; delete it before running shards",
                stage.name,
                stage.dir.display()
            ),
            _ => {}
        }
        std::fs::create_dir_all(&stage.dir)
            .with_context(|| format!("creating {}", stage.dir.display()))?;
        write_pending(&stage.dir, &key)?;
        let args = [stage.args.clone(), shard_args.to_vec()].concat();
        // Shards may run at once: one log each.
        let shard = shard_args
            .iter()
            .skip_while(|arg| *arg != "--shard")
            .nth(1)
            .map_or_else(String::new, |k_of_n| k_of_n.replace('/', "of"));
        let log = format!("stage-shard-{shard}.log");
        let record = execute(stage, &args, "shard".into(), &self.child, &log)?;
        let outcome = Outcome {
            name: stage.name.clone(),
            record: StageRecord {
                run_id: "shard".into(),
                ..record
            },
            cached: false,
        };
        self.records
            .insert(stage.name.clone(), outcome.record.clone());
        self.outcomes.push(outcome.clone());
        Ok(outcome)
    }

    fn run_with(
        &mut self,
        stage: &StageSpec,
        exec: impl FnOnce(&[String], String) -> Result<StageRecord>,
    ) -> Result<Outcome> {
        let key = self.key(stage)?;
        let previous = read_record(&stage.dir);
        let outcome = match previous {
            Some(record) if record.key == key => {
                println!("[{}] cached ({})", stage.name, stage.dir.display());
                Outcome {
                    name: stage.name.clone(),
                    record,
                    cached: true,
                }
            }
            previous => {
                let partial = previous.is_none()
                    && read_pending(&stage.dir).is_some_and(|pending| pending == key);
                if stage.dir.exists() && !partial {
                    // Finished or begun with another config or from other inputs: stale.
                    std::fs::remove_dir_all(&stage.dir)
                        .with_context(|| format!("clearing {}", stage.dir.display()))?;
                }
                std::fs::create_dir_all(&stage.dir)
                    .with_context(|| format!("creating {}", stage.dir.display()))?;
                write_pending(&stage.dir, &key)?;
                let mut args = stage.args.clone();
                if partial {
                    args.extend(stage.resume_args.iter().cloned());
                }
                let record = exec(&args, key)?;
                write_record(&stage.dir, &record)?;
                let _ = std::fs::remove_file(stage.dir.join(PENDING));
                Outcome {
                    name: stage.name.clone(),
                    record,
                    cached: false,
                }
            }
        };
        self.records
            .insert(stage.name.clone(), outcome.record.clone());
        self.outcomes.push(outcome.clone());
        Ok(outcome)
    }
}

fn execute(
    stage: &StageSpec,
    args: &[String],
    key: String,
    child: &ChildOptions,
    log_name: &str,
) -> Result<StageRecord> {
    println!(
        "[{}] {} {}",
        stage.name,
        stage
            .program
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        args.join(" ")
    );
    let start = Instant::now();
    let mut command = Command::new(&stage.program);
    command.args(args);
    if let Some(threads) = child.threads {
        command.env("RAYON_NUM_THREADS", threads.to_string());
    }
    let log = stage.dir.join(log_name);
    if child.log_to_file {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command.stdout(file.try_clone()?).stderr(file);
    }
    let mut child_process = command
        .spawn()
        .with_context(|| format!("stage {}: starting {}", stage.name, stage.program.display()))?;
    let mut peak = None;
    let status = loop {
        if let Some(mib) = peak_rss_mib(child_process.id()).filter(|m| *m > 0.0) {
            peak = Some(mib);
        }
        if let Some(status) = child_process.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        if child.log_to_file {
            print_tail(&stage.name, &log);
        }
        bail!(
            "stage {} failed ({status}); its folder {} is kept, re-run to resume",
            stage.name,
            stage.dir.display()
        );
    }
    let wall_s = start.elapsed().as_secs_f64();
    println!("[{}] done in {wall_s:.1} s", stage.name);
    Ok(new_record(key, wall_s, peak))
}

/// Prints the last lines of a failed stage's log.
fn print_tail(name: &str, log: &Path) {
    const LINES: usize = 20;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    println!(
        "[{name}] failed; the last lines of {} (whole log there):",
        log.display()
    );
    for line in &lines[lines.len().saturating_sub(LINES)..] {
        println!("[{name}] | {line}");
    }
}

/// The record of a finished stage, with a fresh run id.
fn new_record(key: String, wall_s: f64, peak_rss_mib: Option<f64>) -> StageRecord {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run_id = format!(
        "{:x}",
        Sha256::digest(format!("{key}/{nanos}/{}", std::process::id()))
    );
    StageRecord {
        key,
        run_id: run_id[..16].to_string(),
        wall_s,
        peak_rss_mib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage that appends a line to `log` and writes `out/file`.
    fn stage(root: &Path, name: &str, after: &[&str], text: &str) -> StageSpec {
        let dir = root.join(name);
        StageSpec {
            name: name.into(),
            dir: dir.clone(),
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                format!(
                    "echo {name} >> {log} && echo {text} > {out}",
                    log = root.join("log").display(),
                    out = dir.join("file").display()
                ),
            ],
            inputs: vec![],
            after: after.iter().map(|s| s.to_string()).collect(),
            resume_args: vec![],
        }
    }

    fn run_all(specs: &[StageSpec]) -> Vec<bool> {
        let mut pipeline = Pipeline::new();
        specs
            .iter()
            .map(|s| pipeline.run(s).unwrap().cached)
            .collect()
    }

    fn log(root: &Path) -> Vec<String> {
        std::fs::read_to_string(root.join("log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn rerun_is_cached_and_deleting_a_stage_reruns_it_and_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let specs = [
            stage(root, "a", &[], "1"),
            stage(root, "b", &["a"], "2"),
            stage(root, "c", &["b"], "3"),
        ];
        assert_eq!(run_all(&specs), [false, false, false]);
        assert_eq!(run_all(&specs), [true, true, true]);
        assert_eq!(log(root), ["a", "b", "c"]);
        std::fs::remove_dir_all(root.join("b")).unwrap();
        assert_eq!(run_all(&specs), [true, false, false]);
        assert_eq!(log(root), ["a", "b", "c", "b", "c"]);
    }

    #[test]
    fn a_changed_command_clears_stale_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        run_all(&[stage(root, "a", &[], "old")]);
        std::fs::write(root.join("a/stale"), "x").unwrap();
        assert_eq!(run_all(&[stage(root, "a", &[], "new")]), [false]);
        assert!(!root.join("a/stale").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("a/file")).unwrap(),
            "new\n"
        );
    }

    #[test]
    fn a_changed_input_file_reruns_and_a_partial_run_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let config = root.join("config.toml");
        std::fs::write(&config, "lr = 1").unwrap();
        let mut spec = stage(root, "a", &[], "x");
        spec.inputs = vec![config.clone()];
        spec.resume_args = vec!["--resume".into()];
        assert_eq!(run_all(std::slice::from_ref(&spec)), [false]);
        std::fs::write(&config, "lr = 2").unwrap();
        assert_eq!(run_all(std::slice::from_ref(&spec)), [false]);
    }

    #[test]
    fn a_partial_run_resumes_under_its_own_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The command writes a partial output, then fails until `go` exists (a kill).
        let flaky = |text: &str| {
            let mut spec = stage(root, "a", &[], text);
            spec.args = vec![
                "-c".into(),
                format!(
                    "echo {text} >> {part} && test -f {go}",
                    part = root.join("a/partial").display(),
                    go = root.join("go").display()
                ),
            ];
            spec.resume_args = vec!["--resume".into()];
            spec
        };
        assert!(Pipeline::new().run(&flaky("one")).is_err());
        assert!(root.join("a/stage.pending").exists());
        // Same key: resumed (`--resume` reaches `sh -c` as $0, harmless), the partial
        // output kept.
        std::fs::write(root.join("go"), "").unwrap();
        assert_eq!(run_all(&[flaky("one")]), [false]);
        let partial = std::fs::read_to_string(root.join("a/partial")).unwrap();
        assert_eq!(partial, "one\none\n");
        assert!(!root.join("a/stage.pending").exists());
        // A partial folder begun under another key is cleared, not resumed.
        std::fs::remove_file(root.join("go")).unwrap();
        assert!(Pipeline::new().run(&flaky("two")).is_err());
        std::fs::write(root.join("go"), "").unwrap();
        assert_eq!(run_all(&[flaky("three")]), [false]);
        let partial = std::fs::read_to_string(root.join("a/partial")).unwrap();
        assert_eq!(partial, "three\n");
    }

    #[test]
    fn a_failing_stage_writes_no_record_and_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = stage(dir.path(), "bad", &[], "x");
        spec.args = vec!["-c".into(), "exit 3".into()];
        let err = Pipeline::new().run(&spec).unwrap_err();
        assert!(err.to_string().contains("stage bad failed"), "{err}");
        assert!(!dir.path().join("bad/stage.json").exists());
    }

    #[test]
    fn a_missing_upstream_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Pipeline::new()
            .run(&stage(dir.path(), "b", &["a"], "x"))
            .unwrap_err();
        assert!(err.to_string().contains("depends on a"), "{err}");
    }

    /// A per-image stand-in: writes `out/<shard>` and logs, like `wsss cam --shard k/n`.
    fn per_image(root: &Path, name: &str) -> StageSpec {
        let dir = root.join(name);
        StageSpec {
            name: name.into(),
            dir: dir.clone(),
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                format!(
                    "echo {name}:${{1:-all}} >> {log} && touch {dir}/$(echo ${{2:-all}} | tr / _)",
                    log = root.join("log").display(),
                    dir = dir.display()
                ),
                "sh".into(),
            ],
            inputs: vec![],
            after: vec!["a".into()],
            resume_args: vec![],
        }
    }

    #[test]
    fn shards_share_the_folder_and_the_final_run_marks_it_done() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let train = stage(root, "a", &[], "1");
        let cams = per_image(root, "cams");
        Pipeline::new().run(&train).unwrap();
        for k in 0..2 {
            let mut p = Pipeline::new();
            assert!(p.reuse(&train).unwrap());
            let shard = ["--shard".to_string(), format!("{k}/2")];
            assert!(!p.run_shard(&cams, &shard).unwrap().cached);
            assert!(!root.join("cams/stage.json").exists());
        }
        assert!(root.join("cams/0_2").exists() && root.join("cams/1_2").exists());
        // The un-sharded run keeps the shards' outputs and writes the record.
        let mut p = Pipeline::new();
        p.run(&train).unwrap();
        p.run(&cams).unwrap();
        assert!(root.join("cams/0_2").exists() && root.join("cams/stage.json").exists());
        // A shard after that is a no-op; a stale folder is refused, not cleared.
        let mut p = Pipeline::new();
        p.run(&train).unwrap();
        assert!(p.run_shard(&cams, &[]).unwrap().cached);
        let mut changed = cams.clone();
        changed.args[1].push_str(" # v2");
        let err = p.run_shard(&changed, &[]).unwrap_err();
        assert!(err.to_string().contains("another config"), "{err}");
        assert!(root.join("cams/0_2").exists());
    }

    #[test]
    fn reuse_runs_nothing_when_outputs_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pipeline::new();
        assert!(!p.reuse(&stage(dir.path(), "a", &[], "1")).unwrap());
        assert!(p.outcomes().is_empty());
        assert!(!dir.path().join("log").exists());
    }

    #[test]
    fn in_process_stages_are_cached_like_commands() {
        let dir = tempfile::tempdir().unwrap();
        let spec = stage(dir.path(), "a", &[], "1");
        let mut runs = 0;
        for _ in 0..2 {
            Pipeline::new()
                .run_in_process(&spec, || {
                    runs += 1;
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(runs, 1);
    }
}
