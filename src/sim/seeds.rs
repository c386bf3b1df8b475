//! Many seeds and shrinking: [`run_seeds`] runs a scenario over seeds and collects the
//! failures, [`shrink`] softens and drops one failure's faults to what still breaks it.

use super::{Fault, World};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

pub(super) fn random_seed() -> u64 {
    crate::node::time_entropy() % 1_000_000_000
}

/// A scenario run that failed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed that reproduces it.
    pub seed: u64,
    /// What failed (the panic message, with the world's report when the world saw it).
    pub message: String,
    /// The faults that took effect in that run.
    pub faults: Vec<Fault>,
}

/// What [`shrink`] found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The seed of the failing run.
    pub seed: u64,
    /// The fewest of its faults that still make the scenario fail, lasting ones cut as short as
    /// still fails (see [`Fault::softened`]).
    pub faults: Vec<Fault>,
    /// How the minimal run failed.
    pub message: String,
    /// The minimal run's trace.
    pub trace: Vec<String>,
    /// How many runs shrinking took.
    pub runs: usize,
}

impl std::fmt::Display for Shrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} still fails with {} fault(s):", self.seed, self.faults.len())?;
        for fault in &self.faults {
            writeln!(f, "  {fault}")?;
        }
        write!(f, "failure: {}", self.message.lines().next().unwrap_or(""))
    }
}

thread_local! {
    /// Set while a runner runs scenarios that are expected to fail: their panics are results,
    /// not news.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `scenario` in a fresh world; `allowed` restricts which fault decisions take effect.
fn run_once(
    seed: u64,
    allowed: Option<std::collections::BTreeSet<usize>>,
    soften: BTreeMap<usize, Duration>,
    scenario: &dyn Fn(&mut World),
) -> (Result<(), String>, Vec<Fault>, Vec<String>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                previous(info);
            }
        }));
    });
    let mut world = World::with_seed(seed);
    {
        let mut core = world.shared.core();
        core.allowed = allowed;
        core.soften = soften;
    }
    QUIET.set(true);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&mut world)));
    QUIET.set(false);
    let (faults, trace) = {
        let mut core = world.shared.core();
        // Faults still in effect lasted as long as the run did.
        core.end_faults(|_| true);
        (core.tape.iter().filter(|f| f.applied).cloned().collect(), core.trace.lines_from(0))
    };
    let result = result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".into())
    });
    (result, faults, trace)
}

/// Runs `scenario` (which builds a world's nodes and faults, runs it, and panics when an
/// invariant breaks) once per seed, and returns the seeds that failed.
pub fn run_seeds(
    seeds: impl IntoIterator<Item = u64>,
    scenario: impl Fn(&mut World),
) -> Vec<Failure> {
    seeds
        .into_iter()
        .filter_map(|seed| {
            let (result, faults, _) = run_once(seed, None, BTreeMap::new(), &scenario);
            result.err().map(|message| Failure { seed, message, faults })
        })
        .collect()
}

/// Finds the fewest and mildest faults of a failing run that still make `scenario` fail.
///
/// First it replays the seed with faults removed (a chunk at a time, then one at a time) while
/// the run keeps failing. Then it softens what is left: each lasting fault (a partition, hold,
/// pause, crash or rule delay) is cut to half its length, and half again, while the run keeps
/// failing. Returns `None` if the seed does not fail.
pub fn shrink(seed: u64, scenario: impl Fn(&mut World)) -> Option<Shrunk> {
    const MAX_RUNS: usize = 400;
    /// Softening stops here: shorter makes no difference worth reporting.
    const SHORTEST: Duration = Duration::from_millis(1);
    let (result, faults, trace) = run_once(seed, None, BTreeMap::new(), &scenario);
    let mut message = result.err()?;
    let mut trace = trace;
    let lasted: BTreeMap<usize, Duration> =
        faults.iter().filter_map(|f| Some((f.index, f.duration?))).collect();
    let mut kept: Vec<usize> = faults.iter().map(|f| f.index).collect();
    let mut minimal = faults;
    let mut runs = 1;
    let mut chunk = kept.len().div_ceil(2).max(1);
    while !kept.is_empty() && runs < MAX_RUNS {
        let mut removed = false;
        let mut start = 0;
        while start < kept.len() && runs < MAX_RUNS {
            let candidate: Vec<usize> = kept[..start]
                .iter()
                .chain(&kept[(start + chunk).min(kept.len())..])
                .copied()
                .collect();
            runs += 1;
            let allowed = Some(candidate.iter().copied().collect());
            let (result, faults, candidate_trace) =
                run_once(seed, allowed, BTreeMap::new(), &scenario);
            match result {
                Err(failure) => {
                    kept = candidate;
                    minimal = faults;
                    message = failure;
                    trace = candidate_trace;
                    removed = true;
                }
                Ok(()) => start += chunk,
            }
        }
        if chunk == 1 && !removed {
            break;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
        chunk = chunk.min(kept.len()).max(1);
    }
    // Soften, one lasting fault at a time, keeping every cut that still fails.
    let allowed: std::collections::BTreeSet<usize> = kept.iter().copied().collect();
    let mut soften = BTreeMap::new();
    for &index in &kept {
        let Some(&full) = lasted.get(&index) else { continue };
        let mut cut = full / 2;
        while cut >= SHORTEST && runs < MAX_RUNS {
            let mut candidate = soften.clone();
            candidate.insert(index, cut);
            runs += 1;
            let (result, faults, candidate_trace) =
                run_once(seed, Some(allowed.clone()), candidate.clone(), &scenario);
            match result {
                Err(failure) => {
                    soften = candidate;
                    minimal = faults;
                    message = failure;
                    trace = candidate_trace;
                    cut /= 2;
                }
                Ok(()) => break,
            }
        }
    }
    // A cut fault's own run never saw its full length: report it from the first run.
    for fault in &mut minimal {
        if fault.duration.is_none() || fault.softened.is_some() {
            fault.duration = lasted.get(&fault.index).copied().or(fault.duration);
        }
    }
    Some(Shrunk { seed, faults: minimal, message, trace, runs })
}
