//! The measured process (`govsync run` or the Kafka Connect JVM): started
//! with its output in a log file, watched, its peak RSS read from /proc,
//! and stopped by its pid (TERM, then KILL), also when the benchmark dies.
//!
//! Three layers make sure nothing outlives a run: [`Child`] stops its
//! process when dropped (also while a failed assertion unwinds); the
//! process gets SIGKILL when the benchmark's main thread dies
//! (PR_SET_PDEATHSIG); and its pid is listed in `<work>/running/` for
//! scripts/bench-peer's exit trap.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Child {
    process: std::process::Child,
    log: PathBuf,
    /// `<work>/running/<pid>`, removed once the process is gone.
    marker: PathBuf,
}

impl Child {
    /// Starts `cmd` with stdout and stderr appended to `log`. `GOVSYNC_<SECTION>__<KEY>`
    /// variables of the caller are not passed on: the config file alone
    /// configures the run.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path, work: &Path) -> Child {
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("GOVSYNC_") && k.contains("__") {
                cmd.env_remove(k.as_ref());
            }
        }
        let out = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} ({cmd:?}): {e}"));
        let running = work.join("running");
        std::fs::create_dir_all(&running).unwrap();
        let marker = running.join(process.id().to_string());
        std::fs::write(&marker, what).unwrap();
        Child {
            process,
            log: log.to_path_buf(),
            marker,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    /// Peak resident set size (VmHWM) so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// SIGTERM, then SIGKILL after `grace`; waits until the process is gone.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_none() {
            signal(self.pid(), libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.exited().is_none() {
                let _ = self.process.kill();
            }
            let _ = self.process.wait();
        }
        let _ = std::fs::remove_file(&self.marker);
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}
