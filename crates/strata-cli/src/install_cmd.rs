//! `strata install server|agent [-- FLAGS]`: installs the server or the agent as a systemd
//! service. It checks the flags as `strata server|agent` would (a wrong flag fails here, not
//! at boot), makes the data directory (0700), and writes a unit that runs this binary with
//! them. The Debian package ships the same units, reading the flags from
//! `/etc/default/strata-ROLE` instead (`--for-package`).
//!
//! The agent's unit stops only the agent (`KillMode=process`): on SIGTERM it moves its
//! instances off the node itself, and with `--keep-instances` it leaves them running for the
//! next agent. `systemctl reload` is an upgrade in place: the agent starts the binary on disk
//! again, which takes the node over and tells systemd it is the service's process now
//! (`Type=notify`, `NotifyAccess=all`). The stop timeout is longer than the agent's
//! `--stop-timeout`, so systemd never kills a leave half-way. `Delegate=yes` lets the agent
//! manage its containers' cgroups.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Parser;

use crate::{CliResult, Failure};

/// Which process a unit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Role::Server => "Strata control plane server",
            Role::Agent => "Strata node agent",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// What to install.
    pub role: Role,
    /// Where the unit goes.
    #[arg(long, default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// The binary the unit runs (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Print the unit instead of writing it (and make no directory).
    #[arg(long)]
    pub print: bool,
    /// The unit the Debian package ships: flags from /etc/default/strata-ROLE.
    #[arg(long, hide = true)]
    pub for_package: bool,
    /// The flags of `strata server` or `strata agent` (after `--`).
    #[arg(last = true)]
    pub flags: Vec<String>,
}

/// Where a role keeps its data unless `--data-dir` says otherwise.
pub fn default_data_dir(role: Role) -> PathBuf {
    PathBuf::from(format!("/var/lib/strata/{}", role.name()))
}

pub fn run(args: InstallArgs) -> CliResult {
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("cannot find this binary's path")?,
    };
    let unit = if args.for_package {
        package_unit(args.role, &binary)
    } else {
        let (flags, data_dir) = checked_flags(args.role, &args.flags)?;
        if !args.print {
            make_private_dir(&data_dir)?;
        }
        let mut command = vec![binary.display().to_string(), args.role.name().to_string()];
        command.extend(flags);
        unit(args.role, &exec_start(&command), None)
    };
    if args.print {
        print!("{unit}");
        return Ok(());
    }
    let path = args
        .unit_dir
        .join(format!("strata-{}.service", args.role.name()));
    std::fs::create_dir_all(&args.unit_dir)
        .with_context(|| format!("cannot create {}", args.unit_dir.display()))?;
    std::fs::write(&path, unit).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {}\n  next: systemctl daemon-reload && systemctl enable --now strata-{}",
        path.display(),
        args.role.name()
    );
    Ok(())
}

/// The flags as the unit passes them (with `--data-dir` added when absent), and the data
/// directory; bad flags are bad input, said as `strata ROLE` would say them.
fn checked_flags(role: Role, flags: &[String]) -> Result<(Vec<String>, PathBuf), Failure> {
    let mut flags = flags.to_vec();
    if flags
        .iter()
        .any(|f| f == "--token" || f.starts_with("--token="))
    {
        return Err(Failure::BadInput(anyhow!(
            "error: --token would put the join token in the unit file, readable by every user\n  hint: pass --token-file FILE (0600) instead"
        )));
    }
    let data_dir = match flag_value(&flags, "--data-dir") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = default_data_dir(role);
            flags.push("--data-dir".into());
            flags.push(dir.display().to_string());
            dir
        }
    };
    if !data_dir.is_absolute() {
        return Err(Failure::BadInput(anyhow!(
            "error: --data-dir {} is relative; a service starts in /\n  hint: give an absolute path",
            data_dir.display()
        )));
    }
    let mut argv = vec!["strata".to_string(), role.name().to_string()];
    argv.extend(flags.iter().cloned());
    if let Err(error) = crate::Cli::try_parse_from(&argv) {
        return Err(Failure::BadInput(anyhow!(
            "error: these flags do not start `strata {}`:\n{}",
            role.name(),
            error.render()
        )));
    }
    Ok((flags, data_dir))
}

/// The value of `--name VALUE` or `--name=VALUE` among `flags`.
fn flag_value<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    flags.iter().enumerate().find_map(|(i, flag)| {
        if flag == name {
            flags.get(i + 1).map(String::as_str)
        } else {
            flag.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
        }
    })
}

/// `command` as an `ExecStart=` value: each word quoted when it must be, `%` and `$` escaped
/// (systemd would expand them).
pub fn exec_start(command: &[String]) -> String {
    command
        .iter()
        .map(|word| {
            let escaped = word
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%")
                .replace('$', "$$");
            if escaped.is_empty() || escaped.contains(char::is_whitespace) || escaped != *word {
                format!("\"{escaped}\"")
            } else {
                escaped
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
/// The words of an `ExecStart=` value, as systemd splits and unescapes them (the subset
/// [`exec_start`] writes).
pub fn exec_start_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '%' | '$' if chars.peek() == Some(&c) => {
                chars.next();
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

fn package_unit(role: Role, binary: &Path) -> String {
    let variable = format!("STRATA_{}_FLAGS", role.name().to_uppercase());
    let command = format!("{} {} ${variable}", binary.display(), role.name());
    unit(
        role,
        &command,
        Some(&format!("/etc/default/strata-{}", role.name())),
    )
}

fn unit(role: Role, exec_start: &str, environment_file: Option<&str>) -> String {
    let environment = environment_file
        .map(|file| format!("EnvironmentFile={file}\n"))
        .unwrap_or_default();
    let role_specific = match role {
        // The agent says when it is up, and which process it is after `systemctl reload`
        // started the binary on disk again to take the node over (an upgrade in place).
        // Only the agent stops: it moves its instances off the node (or leaves them, with
        // --keep-instances); 90 s is longer than its --stop-timeout of 60 s.
        Role::Agent => {
            "Type=notify\nNotifyAccess=all\nExecReload=/bin/kill -HUP $MAINPID\nKillMode=process\nTimeoutStopSec=90\nDelegate=yes\n"
        }
        Role::Server => "Type=simple\nTimeoutStopSec=30\n",
    };
    format!(
        "# Written by `strata install {name}`.\n\
         [Unit]\n\
         Description={description}\n\
         Documentation=file:///usr/share/doc/strata/operations.md\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         {environment}\
         ExecStart={exec_start}\n\
         Restart=always\n\
         RestartSec=1\n\
         LimitNOFILE=1048576\n\
         {role_specific}\
         Environment=STRATA_LOG_FORMAT=json\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = role.name(),
        description = role.description(),
    )
}

fn make_private_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_quotes_what_systemd_would_split_or_expand_and_reads_back() {
        let table: [&[&str]; 4] = [
            &[
                "/usr/bin/strata",
                "agent",
                "--join",
                "https://10.0.0.1:7700",
            ],
            &["/opt/my strata/strata", "agent", "--labels", "zone=a b"],
            &["strata", "server", "--store", "etcd://u:p%w$d@h:2379/ns"],
            &["strata", "agent", "--name", "", "--labels", "x=\"q\"\\"],
        ];
        for words in table {
            let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            let line = exec_start(&words);
            assert_eq!(exec_start_words(&line), words, "{line}");
            assert!(!line.contains("p%w") && !line.contains("w$d"), "{line}");
        }
        assert_eq!(
            exec_start(&["strata".into(), "agent".into()]),
            "strata agent"
        );
    }

    #[test]
    fn flags_are_checked_as_the_command_would_and_a_data_dir_is_added() {
        let flags = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (checked, dir) =
            checked_flags(Role::Agent, &flags(&["--join", "https://h:7700"])).unwrap();
        assert_eq!(dir, PathBuf::from("/var/lib/strata/agent"));
        assert_eq!(
            checked[checked.len() - 2..],
            flags(&["--data-dir", "/var/lib/strata/agent"])
        );
        let (_, dir) = checked_flags(
            Role::Server,
            &flags(&["--data-dir=/srv/strata", "--api-addr", "0.0.0.0:7700"]),
        )
        .unwrap();
        assert_eq!(dir, PathBuf::from("/srv/strata"));
        for bad in [
            flags(&["--join", "https://h:7700", "--token", "secret"]),
            flags(&["--no-such-flag"]),
            flags(&["--join", "h", "--data-dir", "relative/dir"]),
            flags(&[]), // an agent needs --join
        ] {
            assert!(
                matches!(checked_flags(Role::Agent, &bad), Err(Failure::BadInput(_))),
                "{bad:?}"
            );
        }
    }
}
