//! CPU accounting from /proc: the machine, this process, and its thread groups.

#[allow(unused_imports)]
use super::*;

/// Linux reports thread CPU time in USER_HZ ticks, 100 per second on every common platform.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// Other processes using more than this many cores make a run noisy.
pub(crate) const BUSY_OTHERS: f64 = 0.2;

/// CPU time of the machine and of this process (whole and per thread group) at one instant.
pub(crate) struct CpuSample {
    pub(crate) at: Instant,
    pub(crate) system: u64,
    pub(crate) total: u64,
    pub(crate) groups: BTreeMap<&'static str, u64>,
}

/// CPU time over wall time between two samples, in cores.
pub(crate) struct CpuUse {
    pub(crate) cores: f64,
    /// Cores used by other processes (including time the hypervisor stole).
    pub(crate) others: f64,
    pub(crate) groups: Vec<(&'static str, f64)>,
    pub(crate) wall: f64,
}

impl CpuSample {
    pub(crate) fn take() -> Self {
        let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
        let mut groups = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let stat = read(&task.path().join("stat"));
                *groups.entry(thread_group(&stat)).or_default() += cpu_ticks(&stat);
            }
        }
        Self {
            at: Instant::now(),
            system: system_busy_ticks(),
            total: cpu_ticks(&read("/proc/self/stat".as_ref())),
            groups,
        }
    }

    pub(crate) fn until(&self, later: &CpuSample) -> CpuUse {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / wall;
        let groups = later
            .groups
            .iter()
            .map(|(name, t)| {
                (
                    *name,
                    cores(t.saturating_sub(*self.groups.get(name).unwrap_or(&0))),
                )
            })
            .filter(|(_, c)| *c >= 0.005)
            .collect();
        let ours = cores(later.total.saturating_sub(self.total));
        CpuUse {
            cores: ours,
            others: (cores(later.system.saturating_sub(self.system)) - ours).max(0.0),
            groups,
            wall,
        }
    }
}

impl CpuUse {
    pub(crate) fn show(&self) -> String {
        let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
        let parts: Vec<String> = self
            .groups
            .iter()
            .map(|(n, c)| format!("{n} {c:.2}"))
            .collect();
        let (ours, others) = (self.cores, self.others);
        format!(
            "{ours:.2} of {nproc} cores ({}); other processes {others:.2}",
            parts.join(", ")
        )
    }

    /// CPU time per unit of work (request or event), in µs, whole and per thread group.
    pub(crate) fn per(&self, units: usize) -> String {
        let micros = |cores: f64| cores * self.wall * 1e6 / units.max(1) as f64;
        let parts: Vec<String> = self
            .groups
            .iter()
            .map(|(n, c)| format!("{n} {:.0}", micros(*c)))
            .collect();
        format!("{:.0} µs ({})", micros(self.cores), parts.join(", "))
    }
}

/// Busy ticks of all CPUs from `/proc/stat`: everything but idle and iowait.
pub(crate) fn system_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (idle, iowait) = (
        fields.get(3).copied().unwrap_or(0),
        fields.get(4).copied().unwrap_or(0),
    );
    fields.iter().sum::<u64>() - idle - iowait
}

/// utime + stime of a `/proc/…/stat` line (fields 14 and 15; the name may hold spaces).
pub(crate) fn cpu_ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Which role a thread plays, from its name.
pub(crate) fn thread_group(stat: &str) -> &'static str {
    let name = stat
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map_or("", |(name, _)| name);
    match name {
        "server" => "server",
        "sqlite-writer" => "sqlite-writer",
        "bench" => "load+receiver",
        _ => "other",
    }
}
