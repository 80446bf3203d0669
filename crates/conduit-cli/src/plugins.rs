//! `conduit plugins list|check|new`, and loading a plugin directory for `query` and `serve`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use claude_conduit::plugin::{PluginManager, Watcher};
use serde_json::Value;

use crate::exit::{EXIT_ERROR_RESULT, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// How long the watcher waits for changes to settle.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// `conduit plugins`.
#[derive(Debug, Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    command: PluginsCommand,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Load every plugin of DIR and show name, version, runtime, state, dependencies and
    /// contributions (then unload them).
    List {
        /// The plugin directory.
        dir: PathBuf,
        /// A gateway TOML file whose `[plugins.NAME]` tables configure the plugins.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Parse, resolve, validate configurations and compile scripts, without running anything;
    /// every problem as `file:line: message`. Exit 0 when there is none, else 1.
    Check {
        /// The plugin directory.
        dir: PathBuf,
        /// A gateway TOML file whose `[plugins.NAME]` tables configure the plugins.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write a working skeleton plugin DIR/NAME.
    New {
        /// The plugin's name.
        name: String,
        /// Its runtime.
        #[arg(long, value_enum, default_value = "rhai")]
        runtime: NewRuntime,
        /// Where to create it.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NewRuntime {
    Rhai,
    Process,
}

/// Load `dir` with these configurations and watch it. Every problem is an error.
pub async fn start(
    dir: &Path,
    configs: impl Iterator<Item = (String, Value)>,
) -> Result<(PluginManager, Option<Watcher>), Vec<String>> {
    let manager = PluginManager::new();
    for (name, config) in configs {
        manager.set_config(name, config);
    }
    let problems = manager.load_dir(dir).await;
    if !problems.is_empty() {
        manager.shutdown().await;
        return Err(problems);
    }
    let watcher = match manager.watch(dir, DEBOUNCE) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("conduit: plugins are not hot-reloaded: {e}");
            None
        }
    };
    Ok((manager, watcher))
}

/// `name version (runtime)` of each plugin, comma separated.
pub fn summary(manager: &PluginManager) -> String {
    let list: Vec<String> = manager
        .list()
        .iter()
        .map(|p| format!("{} {} ({})", p.name, p.version, p.runtime.as_str()))
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn configs(file: Option<&Path>) -> Result<Vec<(String, Value)>, String> {
    let Some(path) = file else {
        return Ok(Vec::new());
    };
    let f = claude_conduit_gateway::config::GatewayFile::load(path).map_err(|e| e.to_string())?;
    Ok(f.plugins
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default()))
        .collect())
}

/// Run `conduit plugins …`.
pub async fn run(args: PluginsArgs) -> ExitCode {
    match args.command {
        PluginsCommand::List { dir, config } => {
            let configs = match configs(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("conduit plugins: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let manager = PluginManager::new();
            for (k, v) in configs {
                manager.set_config(k, v);
            }
            let problems = manager.load_dir(&dir).await;
            println!(
                "{:<20} {:<10} {:<8} {:<8} {:<24} CONTRIBUTIONS",
                "NAME", "VERSION", "RUNTIME", "STATE", "DEPENDS"
            );
            for p in manager.list() {
                let depends: Vec<String> =
                    p.depends.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let mut contributes: Vec<String> =
                    p.hooks.iter().map(|h| format!("hook {h}")).collect();
                contributes.extend(p.tools.iter().map(|t| format!("tool {t}")));
                if p.permission_policy {
                    contributes.push("can_use_tool".into());
                }
                contributes.extend(p.message_types.iter().map(|t| format!("message {t}")));
                contributes.extend(p.frame_types.iter().map(|t| format!("frames {t}")));
                if p.query_layer {
                    contributes.push("query layer".into());
                }
                println!(
                    "{:<20} {:<10} {:<8} {:<8} {:<24} {}",
                    p.name,
                    p.version,
                    p.runtime.as_str(),
                    p.state.as_str(),
                    if depends.is_empty() {
                        "-".into()
                    } else {
                        depends.join(", ")
                    },
                    if contributes.is_empty() {
                        "-".into()
                    } else {
                        contributes.join(", ")
                    }
                );
                if let Some(e) = &p.error {
                    println!("    error: {e}");
                }
            }
            for p in &problems {
                eprintln!("conduit plugins: {p}");
            }
            manager.shutdown().await;
            ExitCode::from(if problems.is_empty() {
                EXIT_OK
            } else {
                EXIT_ERROR_RESULT
            })
        }
        PluginsCommand::Check { dir, config } => {
            let configs = match configs(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("conduit plugins: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let manager = PluginManager::new();
            for (k, v) in configs {
                manager.set_config(k, v);
            }
            let problems = manager.check_dir(&dir);
            for p in &problems {
                println!("{p}");
            }
            ExitCode::from(if problems.is_empty() {
                EXIT_OK
            } else {
                EXIT_ERROR_RESULT
            })
        }
        PluginsCommand::New { name, runtime, dir } => match new(&dir, &name, runtime) {
            Ok(path) => {
                println!("created {}", path.display());
                ExitCode::from(EXIT_OK)
            }
            Err(e) => {
                eprintln!("conduit plugins new: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}

/// The Python coprocessor of `examples/plugins/word-count`, the skeleton of `--runtime process`.
const COPROCESSOR: &str = include_str!("../../../examples/plugins/word-count/copro.py");

fn new(dir: &Path, name: &str, runtime: NewRuntime) -> Result<PathBuf, String> {
    let path = dir.join(name);
    if path.exists() {
        return Err(format!("{} exists already", path.display()));
    }
    let (manifest, files): (String, Vec<(&str, String)>) = match runtime {
        NewRuntime::Rhai => (
            format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\nruntime = \"rhai\"\nentry = \"main.rhai\"\n\
                 description = \"A policy script\"\n# on_error = \"deny\"  # fail closed\n\n\
                 [limits]\nmax_operations = 100000\nmax_wall_ms = 500\n"
            ),
            vec![(
                "main.rhai",
                "// One function per CLI hook event, in snake_case; the input map has the CLI's \
                 own field names.\n\
                 fn pre_tool_use(input) {\n    \
                     if input.tool_name == \"Bash\" && input.tool_input.command.contains(\"rm -rf\") {\n        \
                         return #{ decision: \"deny\", reason: \"no rm -rf\" };\n    \
                     }\n    \
                     // (): no opinion\n\
                 }\n"
                    .to_owned(),
            )],
        ),
        NewRuntime::Process => (
            format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\nruntime = \"process\"\n\
                 entry = [\"python3\", \"-u\", \"copro.py\"]\ndescription = \"A coprocessor\"\n\
                 timeout_ms = 5000\n\n[limits]\nmemory_mb = 512\n\n[config]\ntype = \"object\"\n\n\
                 [config.properties.blocked]\ntype = \"array\"\nitems = {{ type = \"string\" }}\n"
            ),
            vec![("copro.py", COPROCESSOR.to_owned())],
        ),
    };
    let probe = claude_conduit::plugin::Manifest::parse(&manifest, &path.join("plugin.toml"))
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(path.join("plugin.toml"), manifest).map_err(|e| e.to_string())?;
    for (f, body) in files {
        std::fs::write(path.join(f), body).map_err(|e| e.to_string())?;
    }
    let _ = probe;
    Ok(path)
}
