//! Dependency resolution: a topological order, or errors that name the problem.

use std::collections::{BTreeMap, BTreeSet};

use semver::{Version, VersionReq};

/// Why a plugin cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// A dependency is not there.
    #[error("plugin `{plugin}` depends on `{dependency}` ({required}), which is not loaded")]
    Missing {
        /// The plugin.
        plugin: String,
        /// What it needs.
        dependency: String,
        /// The requirement.
        required: VersionReq,
    },
    /// A dependency is there in a version that does not match.
    #[error(
        "plugin `{plugin}` depends on `{dependency}` {required}, but version {found} is loaded"
    )]
    Mismatch {
        /// The plugin.
        plugin: String,
        /// What it needs.
        dependency: String,
        /// The requirement.
        required: VersionReq,
        /// What is there.
        found: Version,
    },
    /// Plugins depend on each other in a circle (the list starts and ends with the same name).
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The whole cycle, `a -> b -> a`.
        cycle: Vec<String>,
    },
    /// A dependency could not be resolved or failed.
    #[error("plugin `{plugin}` depends on `{dependency}`, which failed")]
    DependencyFailed {
        /// The plugin.
        plugin: String,
        /// The failed dependency.
        dependency: String,
    },
}

impl ResolveError {
    /// The plugins this error is about (a cycle: every member).
    pub fn plugins(&self) -> Vec<&str> {
        match self {
            ResolveError::Missing { plugin, .. }
            | ResolveError::Mismatch { plugin, .. }
            | ResolveError::DependencyFailed { plugin, .. } => vec![plugin.as_str()],
            ResolveError::Cycle { cycle } => cycle.iter().map(String::as_str).collect(),
        }
    }
}

/// One plugin as resolution sees it.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its version.
    pub version: &'a Version,
    /// Its dependencies.
    pub depends: &'a BTreeMap<String, VersionReq>,
}

/// Resolve `nodes`: the names in an order where every plugin comes after its dependencies
/// (ties by name), and the errors of the plugins that cannot load (those are left out of the
/// order, and so is every plugin that depends on one of them).
pub fn resolve(nodes: &[Node<'_>]) -> (Vec<String>, Vec<ResolveError>) {
    let by_name: BTreeMap<&str, &Node<'_>> = nodes.iter().map(|n| (n.name, n)).collect();
    let mut errors = Vec::new();
    let mut bad: BTreeSet<String> = BTreeSet::new();
    for n in nodes {
        for (dep, req) in n.depends {
            match by_name.get(dep.as_str()) {
                None => {
                    errors.push(ResolveError::Missing {
                        plugin: n.name.to_owned(),
                        dependency: dep.clone(),
                        required: req.clone(),
                    });
                    bad.insert(n.name.to_owned());
                }
                Some(d) if !req.matches(d.version) => {
                    errors.push(ResolveError::Mismatch {
                        plugin: n.name.to_owned(),
                        dependency: dep.clone(),
                        required: req.clone(),
                        found: d.version.clone(),
                    });
                    bad.insert(n.name.to_owned());
                }
                Some(_) => {}
            }
        }
    }
    // Cycles: depth-first search with colours; each cycle is reported once.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = by_name.keys().map(|k| (*k, Mark::New)).collect();
    let mut seen_cycles: BTreeSet<Vec<String>> = BTreeSet::new();
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a Node<'a>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(name, Mark::Open);
        stack.push(name);
        if let Some(node) = by_name.get(name) {
            for dep in node.depends.keys() {
                let Some((dep, _)) = by_name.get_key_value(dep.as_str()) else {
                    continue;
                };
                match marks.get(dep).copied() {
                    Some(Mark::New) => visit(dep, by_name, marks, stack, cycles),
                    Some(Mark::Open) => {
                        if let Some(at) = stack.iter().position(|s| s == dep) {
                            let mut cycle: Vec<String> =
                                stack[at..].iter().map(|s| (*s).to_owned()).collect();
                            cycle.push((*dep).to_owned());
                            cycles.push(cycle);
                        }
                    }
                    _ => {}
                }
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
    }
    let names: Vec<&str> = by_name.keys().copied().collect();
    for name in names {
        if marks.get(name) == Some(&Mark::New) {
            let mut cycles = Vec::new();
            visit(name, &by_name, &mut marks, &mut Vec::new(), &mut cycles);
            for cycle in cycles {
                // The same cycle found from another member: compare as a rotation-free set.
                let mut key = cycle[..cycle.len() - 1].to_vec();
                key.sort();
                if seen_cycles.insert(key) {
                    bad.extend(cycle.iter().cloned());
                    errors.push(ResolveError::Cycle { cycle });
                }
            }
        }
    }
    // Kahn's algorithm over the good plugins; a plugin whose dependency is bad is bad too.
    let mut order = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    loop {
        let mut progressed = false;
        for n in nodes {
            if placed.contains(n.name) || bad.contains(n.name) {
                continue;
            }
            if let Some(dep) = n.depends.keys().find(|d| bad.contains(d.as_str())) {
                errors.push(ResolveError::DependencyFailed {
                    plugin: n.name.to_owned(),
                    dependency: dep.clone(),
                });
                bad.insert(n.name.to_owned());
                progressed = true;
                continue;
            }
            if n.depends.keys().all(|d| placed.contains(d.as_str())) {
                placed.insert(n.name);
                order.push(n.name.to_owned());
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    (order, errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn n<'a>(
        name: &'a str,
        version: &'a Version,
        depends: &'a BTreeMap<String, VersionReq>,
    ) -> Node<'a> {
        Node {
            name,
            version,
            depends,
        }
    }

    fn deps(list: &[(&str, &str)]) -> BTreeMap<String, VersionReq> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), VersionReq::parse(v).unwrap()))
            .collect()
    }

    #[test]
    fn dependencies_come_first() {
        let v = Version::new(1, 2, 0);
        let (a, b, c, none) = (
            deps(&[("b", "^1"), ("c", "^1.1")]),
            deps(&[("c", "*")]),
            deps(&[]),
            deps(&[]),
        );
        let nodes = [
            n("a", &v, &a),
            n("b", &v, &b),
            n("c", &v, &c),
            n("z", &v, &none),
        ];
        let (order, errors) = resolve(&nodes);
        assert!(errors.is_empty(), "{errors:?}");
        let pos = |x: &str| order.iter().position(|o| o == x).unwrap();
        assert!(pos("c") < pos("b") && pos("b") < pos("a"), "{order:?}");
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn missing_mismatch_and_cycle_are_named_and_dependants_fail() {
        let (v1, v2) = (Version::new(1, 0, 0), Version::new(2, 3, 4));
        let missing = deps(&[("ghost", "^1")]);
        let mismatch = deps(&[("old", "^3")]);
        let none = deps(&[]);
        let (x, y, zz) = (
            deps(&[("y", "*")]),
            deps(&[("zz", "*")]),
            deps(&[("x", "*")]),
        );
        let on_missing = deps(&[("needs-ghost", "*")]);
        let nodes = [
            n("needs-ghost", &v1, &missing),
            n("needs-new", &v1, &mismatch),
            n("old", &v2, &none),
            n("x", &v1, &x),
            n("y", &v1, &y),
            n("zz", &v1, &zz),
            n("top", &v1, &on_missing),
        ];
        let (order, errors) = resolve(&nodes);
        assert_eq!(order, ["old"]);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(
                &"plugin `needs-ghost` depends on `ghost` (^1), which is not loaded".to_owned()
            ),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"plugin `needs-new` depends on `old` ^3, but version 2.3.4 is loaded".to_owned()
            ),
            "{text:?}"
        );
        assert!(
            text.contains(&"dependency cycle: x -> y -> zz -> x".to_owned()),
            "{text:?}"
        );
        assert!(errors.contains(&ResolveError::DependencyFailed {
            plugin: "top".into(),
            dependency: "needs-ghost".into()
        }));
        assert_eq!(
            errors
                .iter()
                .filter(|e| matches!(e, ResolveError::Cycle { .. }))
                .count(),
            1
        );
    }
}
