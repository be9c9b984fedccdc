//! Runs independent chains of stages (one per method) side by side.
//!
//! Each chain gets its own [`Pipeline::fork`], so the cache keys are exactly those of a
//! serial run; afterwards the forks are joined back in the chains' order, so the report
//! does not depend on which chain finished first. A failing chain does not stop the others
//! (their finished stages are cached for the re-run); the errors are reported together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Result};

use super::stage::{ChildOptions, Pipeline};

/// A chain's stages, run on its own pipeline.
pub type ChainWork<'a, T> = Box<dyn FnOnce(&mut Pipeline) -> Result<T> + Send + 'a>;

/// One chain: a name (for messages) and the work, run on its own pipeline.
pub struct Chain<'a, T> {
    /// Name used in messages, e.g. `weaktr`.
    pub name: &'static str,
    /// Expected cost (any unit): the costliest chains start first, which shortens the
    /// whole run when there are more chains than jobs.
    pub cost: u32,
    /// The stages.
    pub run: ChainWork<'a, T>,
}

/// How many chains run at once for `jobs` (0: one per core) and the rayon threads each
/// command gets (none when one chain runs at a time: commands keep their default).
pub fn plan(jobs: usize, cores: usize, chains: usize) -> (usize, ChildOptions) {
    let cores = cores.max(1);
    let jobs = if jobs == 0 { cores } else { jobs };
    let jobs = jobs.clamp(1, chains.max(1));
    if jobs == 1 {
        return (1, ChildOptions::default());
    }
    let child = ChildOptions {
        threads: Some((cores / jobs).max(1)),
        log_to_file: true,
    };
    (jobs, child)
}

/// Runs `chains` on `jobs` threads (see [`plan`]) and joins their stages into
/// `pipeline`; returns their results in the given order.
pub fn run_chains<T: Send>(
    pipeline: &mut Pipeline,
    chains: Vec<Chain<'_, T>>,
    jobs: usize,
) -> Result<Vec<T>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (jobs, child) = plan(jobs, cores, chains.len());
    if jobs == 1 {
        return chains
            .into_iter()
            .map(|chain| (chain.run)(pipeline))
            .collect();
    }
    println!(
        "running {} method chains, {jobs} at a time ({} thread(s) each); each command's \
         output goes to stage.log in its stage folder",
        chains.len(),
        child.threads.unwrap_or(1)
    );
    let mut order: Vec<usize> = (0..chains.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(chains[i].cost));
    let names: Vec<&str> = chains.iter().map(|c| c.name).collect();
    let slots: Vec<Mutex<Option<Chain<'_, T>>>> =
        chains.into_iter().map(|c| Mutex::new(Some(c))).collect();
    type Finished<T> = (Pipeline, Result<T>);
    let results: Vec<Mutex<Option<Finished<T>>>> =
        (0..slots.len()).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while let Some(&index) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let chain = slots[index]
                        .lock()
                        .map_or(None, |mut slot| slot.take())
                        .expect("each chain is taken once");
                    let mut fork = pipeline.fork(child.clone());
                    let result = (chain.run)(&mut fork);
                    if let Err(err) = &result {
                        println!("[{}] chain failed: {err:#}", chain.name);
                    }
                    if let Ok(mut slot) = results[index].lock() {
                        *slot = Some((fork, result));
                    }
                }
            });
        }
    });
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (name, slot) in names.iter().zip(results) {
        let finished = slot.into_inner().ok().flatten();
        let Some((fork, result)) = finished else {
            errors.push(format!("{name}: the chain's thread panicked"));
            continue;
        };
        pipeline.join(fork);
        match result {
            Ok(value) => values.push(value),
            Err(err) => errors.push(format!("{name}: {err:#}")),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(anyhow!(
            "{} of {} method chains failed (the others' stages are done and cached):\n{}",
            errors.len(),
            names.len(),
            errors.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::stage::StageSpec;
    use std::path::Path;

    fn shell_stage(root: &Path, name: &str, after: &[&str], script: &str) -> StageSpec {
        StageSpec {
            name: name.into(),
            dir: root.join(name),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            inputs: vec![],
            after: after.iter().map(|s| s.to_string()).collect(),
            resume_args: vec![],
        }
    }

    #[test]
    fn plan_shares_the_cores_and_never_exceeds_the_chains() {
        assert_eq!(plan(1, 2, 5), (1, ChildOptions::default()));
        let (jobs, child) = plan(0, 2, 5);
        assert_eq!((jobs, child.threads, child.log_to_file), (2, Some(1), true));
        assert_eq!(plan(0, 8, 3).0, 3);
        assert_eq!(plan(0, 8, 2).1.threads, Some(4));
        assert_eq!(plan(0, 2, 1).0, 1);
        assert_eq!(plan(4, 2, 5).1.threads, Some(1));
    }

    #[test]
    fn chains_run_side_by_side_and_join_in_their_given_order() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        let mut pipeline = Pipeline::new();
        pipeline.run(&shell_stage(root, "data", &[], "true"))?;
        // `slow` starts first (higher cost) and sleeps, so `fast` finishes before it;
        // the barrier file proves both ran at once: `fast` waits for `slow` to start.
        let slow_started = root.join("slow_started");
        let fast = shell_stage(
            root,
            "fast",
            &["data"],
            &format!(
                "while [ ! -e {} ]; do sleep 0.01; done; echo fast-out",
                slow_started.display()
            ),
        );
        let slow = shell_stage(
            root,
            "slow",
            &["data"],
            &format!("touch {}; sleep 0.3", slow_started.display()),
        );
        let chains = vec![
            Chain {
                name: "fast",
                cost: 1,
                run: Box::new(|p: &mut Pipeline| {
                    p.run(&fast)?;
                    Ok("fast")
                }),
            },
            Chain {
                name: "slow",
                cost: 9,
                run: Box::new(|p: &mut Pipeline| {
                    p.run(&slow)?;
                    Ok("slow")
                }),
            },
        ];
        let values = run_chains(&mut pipeline, chains, 2)?;
        assert_eq!(values, ["fast", "slow"]);
        let names: Vec<&str> = pipeline
            .outcomes()
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["data", "fast", "slow"]);
        // Output went to the stage's log, not the terminal.
        let log = std::fs::read_to_string(root.join("fast").join(super::super::stage::LOG))?;
        assert_eq!(log.trim(), "fast-out");
        // The forks kept the serial cache keys: a serial re-run finds every stage cached.
        let mut again = Pipeline::new();
        again.run(&shell_stage(root, "data", &[], "true"))?;
        assert!(again.run(&fast)?.cached);
        assert!(again.run(&slow)?.cached);
        Ok(())
    }

    #[test]
    fn one_failing_chain_lets_the_others_finish_and_names_itself() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        let mut pipeline = Pipeline::new();
        let chains = vec![
            Chain {
                name: "broken",
                cost: 1,
                run: Box::new(|p: &mut Pipeline| {
                    p.run(&shell_stage(root, "broken", &[], "echo why >&2; exit 3"))?;
                    Ok(())
                }),
            },
            Chain {
                name: "fine",
                cost: 1,
                run: Box::new(|p: &mut Pipeline| {
                    p.run(&shell_stage(root, "fine", &[], "sleep 0.1"))?;
                    Ok(())
                }),
            },
        ];
        let err = run_chains(&mut pipeline, chains, 2).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("1 of 2 method chains failed"), "{text}");
        assert!(text.contains("broken: stage broken failed"), "{text}");
        assert!(root.join("fine/stage.json").is_file());
        assert!(!root.join("broken/stage.json").exists());
        let log = std::fs::read_to_string(root.join("broken").join(super::super::stage::LOG))?;
        assert_eq!(log.trim(), "why");
        Ok(())
    }
}
