//! Checks of the Kubernetes manifests under `k8s/` and of the Dockerfile.
//!
//! The args of every dtredact container go through the real command-line
//! parser, and every ConfigMap that carries `dtredact.toml` goes through the
//! real binary's `check-config`. The rest are consistency checks that the
//! schema validation in `k8s/validate.sh` cannot make. They cover probes on
//! the admin port, the hardened securityContext, a termination grace period
//! above the proxy's shutdown grace, and ports that match the config. They
//! also cover labels, images and the kustomization resource lists.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use dtredact::cli::{Cli, Command as Subcommand};
use dtredact::config::Config;
use serde::Deserialize;
use serde_yaml::Value;

/// UID and GID of distroless's nonroot user, set by the Dockerfile's USER.
const NONROOT_ID: i64 = 65532;

/// Admin port of every dtredact container in the manifests.
const ADMIN_PORT: u16 = 9090;

/// Placeholder in `secret.example.yaml`.
const TOKEN_PLACEHOLDER: &str = "REPLACE_WITH_YOUR_TOKEN";

/// Labels that every resource of `k8s/sidecar` and `k8s/forwarder` carries.
const RECOMMENDED_LABELS: [&str; 5] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
];

/// Directories whose resources must carry `RECOMMENDED_LABELS`.
const LABELLED_DIRS: [&str; 2] = ["sidecar", "forwarder"];

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn k8s_dir() -> PathBuf {
    repo_dir().join("k8s")
}

/// One YAML document of a file under `k8s/`.
struct Document {
    path: PathBuf,
    value: Value,
}

impl Document {
    /// Path relative to `k8s/`, for messages.
    fn name(&self) -> String {
        self.path
            .strip_prefix(k8s_dir())
            .unwrap_or(&self.path)
            .display()
            .to_string()
    }

    fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .expect("a manifest has a parent directory")
    }
}

/// A container whose image is dtredact's, or, in a patch without an image,
/// whose name is `dtredact`.
struct DtredactContainer<'a> {
    document: &'a Document,
    pod_spec: &'a Value,
    container: &'a Value,
}

impl DtredactContainer<'_> {
    fn name(&self) -> String {
        let name = self.container["name"].as_str().unwrap_or("?");
        format!("{} container {name}", self.document.name())
    }

    /// True for a full container, and false for an entry of a patch, which
    /// lists only what it changes.
    fn is_complete(&self) -> bool {
        self.container.get("image").is_some()
    }

    fn args(&self) -> Vec<String> {
        let args = self.container["args"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{}: args missing or not a list", self.name()));
        args.iter()
            .map(|arg| {
                arg.as_str()
                    .unwrap_or_else(|| panic!("{}: arg {arg:?} is not a string", self.name()))
                    .to_owned()
            })
            .collect()
    }

    fn parse_args(&self) -> Cli {
        let args = self.args();
        Cli::try_parse_from(std::iter::once("dtredact".to_owned()).chain(args.clone()))
            .unwrap_or_else(|e| panic!("{}: args {args:?} are invalid:\n{e}", self.name()))
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("failed to read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Reads every document of every YAML file under `k8s/`, in path order.
fn documents() -> Vec<Document> {
    let mut paths = Vec::new();
    yaml_files(&k8s_dir(), &mut paths);
    paths.sort();
    let mut documents = Vec::new();
    for path in paths {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
        for deserializer in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(deserializer)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            if !value.is_null() {
                documents.push(Document {
                    path: path.clone(),
                    value,
                });
            }
        }
    }
    assert!(!documents.is_empty(), "no YAML documents under k8s/");
    documents
}

/// Collects every mapping with a `containers` or `initContainers` list:
/// the pod specs of workloads, and of patches to them.
fn pod_specs<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Mapping(map) => {
            if map.contains_key("containers") || map.contains_key("initContainers") {
                out.push(value);
            }
            for child in map.values() {
                pod_specs(child, out);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                pod_specs(item, out);
            }
        }
        _ => {}
    }
}

fn containers_of(pod_spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .filter_map(|key| pod_spec.get(key).and_then(Value::as_sequence))
        .flatten()
}

/// True when `image` names the dtredact repository, in any registry.
fn is_dtredact_image(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_segment.split(':').next() == Some("dtredact")
}

fn dtredact_containers(documents: &[Document]) -> Vec<DtredactContainer<'_>> {
    let mut found = Vec::new();
    for document in documents {
        let mut specs = Vec::new();
        pod_specs(&document.value, &mut specs);
        for pod_spec in specs {
            for container in containers_of(pod_spec) {
                let is_dtredact = match container.get("image").and_then(Value::as_str) {
                    Some(image) => is_dtredact_image(image),
                    None => container["name"].as_str() == Some("dtredact"),
                };
                if is_dtredact {
                    found.push(DtredactContainer {
                        document,
                        pod_spec,
                        container,
                    });
                }
            }
        }
    }
    found
}

/// Returns the `dtredact.toml` of every ConfigMap that contains one, with
/// the document it came from.
fn dtredact_configs(documents: &[Document]) -> Vec<(&Document, &str)> {
    documents
        .iter()
        .filter(|d| d.kind() == Some("ConfigMap"))
        .filter_map(|d| {
            let toml = d.value["data"].get("dtredact.toml")?;
            Some((d, toml.as_str().expect("dtredact.toml is a string")))
        })
        .collect()
}

/// Parses the config of a complete container. It is the ConfigMap in the
/// container's directory that backs the volume mounted at the directory of
/// its `-c` path.
fn container_config(container: &DtredactContainer<'_>, documents: &[Document]) -> Config {
    let cli = container.parse_args();
    let config_path = match &cli.command {
        Subcommand::Tail(args) => args.common.config.clone(),
        Subcommand::Proxy(args) => args.common.config.clone(),
        other => panic!("{}: unexpected subcommand {other:?}", container.name()),
    }
    .unwrap_or_else(|| panic!("{}: no -c CONFIG in args", container.name()));
    let mount_dir = config_path.parent().unwrap().to_str().unwrap().to_owned();
    let file_name = config_path.file_name().unwrap().to_str().unwrap();

    let mounts = container.container["volumeMounts"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: no volumeMounts", container.name()));
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(mount_dir.as_str()))
        .unwrap_or_else(|| panic!("{}: nothing is mounted at {mount_dir}", container.name()));
    let volume_name = mount["name"].as_str().unwrap();
    let volume = container.pod_spec["volumes"]
        .as_sequence()
        .and_then(|volumes| {
            volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(volume_name))
        })
        .unwrap_or_else(|| panic!("{}: no volume {volume_name}", container.name()));
    let config_map_name = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: volume {volume_name} is no ConfigMap", container.name()));

    let (_, toml) = dtredact_configs(documents)
        .into_iter()
        .find(|(d, _)| {
            d.dir() == container.document.dir()
                && d.value["metadata"]["name"].as_str() == Some(config_map_name)
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: no ConfigMap {config_map_name} with dtredact.toml beside it",
                container.name()
            )
        });
    assert_eq!(
        file_name,
        "dtredact.toml",
        "{}: -c must name the ConfigMap key dtredact.toml",
        container.name()
    );
    Config::parse(toml, &config_path)
        .unwrap_or_else(|e| panic!("ConfigMap {config_map_name} is invalid: {e}"))
}

fn admin_addr(cli: &Cli) -> Option<SocketAddr> {
    match &cli.command {
        Subcommand::Tail(args) => args.admin_addr,
        Subcommand::Proxy(args) => args.admin_addr,
        _ => None,
    }
}

/// Returns the containerPort of the port named `name`.
fn named_port(container: &DtredactContainer<'_>, name: &str) -> u16 {
    let ports = container.container["ports"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: no ports", container.name()));
    let port = ports
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{}: no port named {name}", container.name()));
    port["containerPort"].as_u64().unwrap() as u16
}

/// Looks `key` up in the container's securityContext, then in the pod's,
/// as the kubelet does for fields that exist at both levels.
fn effective_security_field<'a>(container: &DtredactContainer<'a>, key: &str) -> Option<&'a Value> {
    container.container["securityContext"]
        .get(key)
        .or_else(|| container.pod_spec["securityContext"].get(key))
}

fn kustomization(dir: &Path) -> Option<Value> {
    let path = dir.join("kustomization.yaml");
    let text = fs::read_to_string(&path).ok()?;
    Some(serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Files a kustomization names under `key`, as paths.
fn kustomization_files(dir: &Path, kustomization: &Value, key: &str) -> Vec<PathBuf> {
    kustomization
        .get(key)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|entry| match entry {
            Value::String(path) => Some(path.as_str()),
            Value::Mapping(map) => map.get("path").and_then(Value::as_str),
            _ => None,
        })
        .map(|path| dir.join(path))
        .collect()
}

/// True for the files a kustomization in the same directory names as
/// patches. They contain partial objects.
fn is_patch(path: &Path) -> bool {
    let dir = path.parent().unwrap();
    kustomization(dir).is_some_and(|k| {
        kustomization_files(dir, &k, "patches")
            .iter()
            .any(|p| p == path)
    })
}

fn duration_secs(value: &Value) -> Duration {
    Duration::from_secs(value.as_u64().expect("a whole number of seconds"))
}

#[test]
fn manifests_contain_dtredact_containers() {
    let documents = documents();
    let containers = dtredact_containers(&documents);
    for dir in ["sidecar", "sidecar-fifo", "forwarder"] {
        let count = containers
            .iter()
            .filter(|c| c.document.dir() == k8s_dir().join(dir))
            .count();
        assert_eq!(count, 1, "k8s/{dir} has {count} dtredact containers");
    }
}

#[test]
fn container_args_parse() {
    let documents = documents();
    for container in dtredact_containers(&documents) {
        assert!(
            container.container.get("command").is_none(),
            "{}: command would replace the image's ENTRYPOINT",
            container.name()
        );
        let cli = container.parse_args();
        let expected = match container.document.dir().file_name().unwrap().to_str() {
            Some("forwarder") => "proxy",
            _ => "tail",
        };
        let actual = match cli.command {
            Subcommand::Tail(_) => "tail",
            Subcommand::Proxy(_) => "proxy",
            _ => "another subcommand",
        };
        assert_eq!(actual, expected, "{}: subcommand", container.name());
    }
}

#[test]
fn sidecar_args_follow_app_logs() {
    let documents = documents();
    for container in dtredact_containers(&documents) {
        let Subcommand::Tail(args) = container.parse_args().command else {
            continue;
        };
        assert_eq!(
            args.checkpoint.as_deref(),
            Some(Path::new("/var/lib/dtredact/checkpoint.json")),
            "{}: --checkpoint",
            container.name()
        );
        for path in &args.paths {
            assert!(
                path.starts_with("/var/log/app/"),
                "{}: {path} is outside the shared log volume",
                container.name()
            );
        }
    }
}

#[test]
fn configmaps_pass_check_config() {
    let documents = documents();
    let configs = dtredact_configs(&documents);
    assert!(
        configs.len() >= 2,
        "expected the sidecar's and the forwarder's ConfigMaps, found {}",
        configs.len()
    );
    let dir = tempfile::tempdir().unwrap();
    for (index, (document, toml)) in configs.into_iter().enumerate() {
        let path = dir.path().join(format!("{index}-dtredact.toml"));
        fs::write(&path, toml).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_dtredact"))
            .arg("check-config")
            .arg(&path)
            .output()
            .expect("failed to run dtredact check-config");
        assert!(
            output.status.success(),
            "dtredact check-config rejected the ConfigMap in {} ({}):\n{}",
            document.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn probes_use_admin_port() {
    let documents = documents();
    for container in dtredact_containers(&documents) {
        if !container.is_complete() {
            continue;
        }
        let name = container.name();
        let addr = admin_addr(&container.parse_args())
            .unwrap_or_else(|| panic!("{name}: no --admin-addr"));
        assert!(
            addr.ip().is_unspecified(),
            "{name}: --admin-addr {addr} is not reachable from the kubelet"
        );
        assert_eq!(addr.port(), ADMIN_PORT, "{name}: --admin-addr port");
        assert_eq!(
            named_port(&container, "admin"),
            ADMIN_PORT,
            "{name}: containerPort of port admin"
        );
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let http_get = &container.container[probe]["httpGet"];
            assert_eq!(
                http_get["path"].as_str(),
                Some(path),
                "{name}: {probe} path"
            );
            let port = match &http_get["port"] {
                Value::String(port_name) => named_port(&container, port_name),
                Value::Number(number) => number.as_u64().unwrap() as u16,
                other => panic!("{name}: {probe} port {other:?}"),
            };
            assert_eq!(port, ADMIN_PORT, "{name}: {probe} port");
        }
    }
}

#[test]
fn security_context_is_hardened() {
    let documents = documents();
    for container in dtredact_containers(&documents) {
        if !container.is_complete() {
            continue;
        }
        let name = container.name();
        let field = |key| effective_security_field(&container, key);
        assert_eq!(
            field("runAsNonRoot").and_then(Value::as_bool),
            Some(true),
            "{name}: runAsNonRoot"
        );
        assert_eq!(
            field("runAsUser").and_then(Value::as_i64),
            Some(NONROOT_ID),
            "{name}: runAsUser"
        );
        assert_eq!(
            field("seccompProfile").and_then(|p| p["type"].as_str()),
            Some("RuntimeDefault"),
            "{name}: seccompProfile"
        );
        let context = &container.container["securityContext"];
        assert_eq!(
            context["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            context["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );
        let dropped: Vec<&str> = context["capabilities"]["drop"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(dropped, ["ALL"], "{name}: capabilities.drop");
        assert!(
            context["capabilities"].get("add").is_none(),
            "{name}: capabilities.add"
        );
    }
}

#[test]
fn grace_period_exceeds_shutdown_grace() {
    let documents = documents();
    for container in dtredact_containers(&documents) {
        if !container.is_complete() {
            continue;
        }
        let name = container.name();
        let config = container_config(&container, &documents);
        let shutdown_grace = match container.parse_args().command {
            Subcommand::Proxy(args) => args.shutdown_grace,
            _ => None,
        }
        .unwrap_or(config.proxy.shutdown_grace);
        let pre_stop = container.container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .map_or(Duration::ZERO, Duration::from_secs);
        let period = container
            .pod_spec
            .get("terminationGracePeriodSeconds")
            .map(duration_secs)
            .unwrap_or_else(|| panic!("{name}: terminationGracePeriodSeconds not set"));
        assert!(
            period > shutdown_grace + pre_stop,
            "{name}: terminationGracePeriodSeconds {period:?} must exceed the preStop \
             sleep {pre_stop:?} plus shutdown_grace {shutdown_grace:?}"
        );
    }
}

#[test]
fn resources_are_set() {
    let documents = documents();
    for document in &documents {
        if is_patch(&document.path) {
            continue;
        }
        let mut specs = Vec::new();
        pod_specs(&document.value, &mut specs);
        for pod_spec in specs {
            for container in containers_of(pod_spec) {
                let name = format!(
                    "{} container {}",
                    document.name(),
                    container["name"].as_str().unwrap_or("?")
                );
                let resources = &container["resources"];
                for key in ["cpu", "memory"] {
                    assert!(
                        resources["requests"].get(key).is_some(),
                        "{name}: resources.requests.{key} not set"
                    );
                }
                assert!(
                    resources["limits"].get("memory").is_some(),
                    "{name}: resources.limits.memory not set"
                );
            }
        }
    }
}

#[test]
fn forwarder_ports_match_config() {
    let documents = documents();
    let container = dtredact_containers(&documents)
        .into_iter()
        .find(|c| c.document.dir() == k8s_dir().join("forwarder"))
        .expect("the forwarder has a dtredact container");
    let config = container_config(&container, &documents);
    assert!(
        config.proxy.listen.ip().is_unspecified(),
        "proxy.listen {} is not reachable through the Service",
        config.proxy.listen
    );
    let http_port = config.proxy.listen.port();
    assert_eq!(named_port(&container, "http"), http_port, "port http");

    let service = documents
        .iter()
        .find(|d| d.dir() == container.document.dir() && d.kind() == Some("Service"))
        .expect("the forwarder has a Service");
    let mut service_ports = BTreeSet::new();
    for port in service.value["spec"]["ports"].as_sequence().unwrap() {
        let target = port["targetPort"].as_str().expect("targetPort is a name");
        service_ports.insert((
            port["name"].as_str().unwrap().to_owned(),
            named_port(&container, target),
        ));
    }
    let expected = BTreeSet::from([
        ("admin".to_owned(), ADMIN_PORT),
        ("http".to_owned(), http_port),
    ]);
    assert_eq!(service_ports, expected, "Service ports");

    let policy = documents
        .iter()
        .find(|d| d.dir() == container.document.dir() && d.kind() == Some("NetworkPolicy"))
        .expect("the forwarder has a NetworkPolicy");
    let ingress_ports: BTreeSet<u64> = policy.value["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_sequence().unwrap())
        .map(|port| port["port"].as_u64().expect("a numeric port"))
        .collect();
    assert_eq!(
        ingress_ports,
        BTreeSet::from([u64::from(http_port), u64::from(ADMIN_PORT)]),
        "NetworkPolicy ingress ports"
    );
}

#[test]
fn forwarder_mounts_upstream_token() {
    let documents = documents();
    let container = dtredact_containers(&documents)
        .into_iter()
        .find(|c| c.document.dir() == k8s_dir().join("forwarder"))
        .expect("the forwarder has a dtredact container");
    let Subcommand::Proxy(args) = container.parse_args().command else {
        panic!("the forwarder runs dtredact proxy");
    };
    let token_file = args
        .upstream_token_file
        .expect("the forwarder has --upstream-token-file");
    let mount_dir = token_file.parent().unwrap().to_str().unwrap();
    let mount = container.container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(mount_dir))
        .unwrap_or_else(|| panic!("nothing is mounted at {mount_dir}"));
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never sees a rotated token"
    );
    let volume = container.pod_spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let secret_name = volume["secret"]["secretName"]
        .as_str()
        .expect("the token volume is a Secret");

    let example = documents
        .iter()
        .find(|d| d.path.ends_with("forwarder/secret.example.yaml"))
        .expect("k8s/forwarder/secret.example.yaml exists");
    assert_eq!(
        example.value["metadata"]["name"].as_str(),
        Some(secret_name)
    );
    let file_name = token_file.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        example.value["stringData"][file_name].as_str(),
        Some(TOKEN_PLACEHOLDER),
        "secret.example.yaml must hold the placeholder under key {file_name}"
    );
    let resources = kustomization_files(
        example.dir(),
        &kustomization(example.dir()).unwrap(),
        "resources",
    );
    assert!(
        !resources.contains(&example.path),
        "secret.example.yaml must not be a kustomization resource"
    );
}

#[test]
fn manifests_contain_no_secret() {
    let mut paths = Vec::new();
    yaml_files(&k8s_dir(), &mut paths);
    paths.push(repo_dir().join("Dockerfile"));
    let output = Command::new(env!("CARGO_BIN_EXE_dtredact"))
        .arg("scan")
        .args(&paths)
        .output()
        .expect("failed to run dtredact scan");
    assert_eq!(
        output.status.code(),
        Some(0),
        "dtredact scan found secrets in the manifests:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn resources_carry_recommended_labels() {
    let version = env!("CARGO_PKG_VERSION");
    let documents = documents();
    for document in &documents {
        let in_labelled_dir = LABELLED_DIRS
            .iter()
            .any(|dir| document.dir() == k8s_dir().join(dir));
        if !in_labelled_dir || document.kind() == Some("Kustomization") {
            continue;
        }
        let name = document.name();
        let mut label_sets = vec![("metadata", &document.value["metadata"]["labels"])];
        if let Some(template) = document.value["spec"].get("template") {
            label_sets.push(("pod template", &template["metadata"]["labels"]));
        }
        for (place, labels) in label_sets {
            for key in RECOMMENDED_LABELS {
                assert!(
                    labels.get(key).and_then(Value::as_str).is_some(),
                    "{name}: {place} label {key} missing"
                );
            }
            assert_eq!(
                labels["app.kubernetes.io/version"].as_str(),
                Some(version),
                "{name}: {place} label app.kubernetes.io/version"
            );
        }
    }
}

#[test]
fn selectors_match_pod_template() {
    let documents = documents();
    for dir in LABELLED_DIRS {
        let dir = k8s_dir().join(dir);
        let in_dir = || documents.iter().filter(|d| d.dir() == dir);
        let deployment = in_dir()
            .find(|d| d.kind() == Some("Deployment"))
            .unwrap_or_else(|| panic!("{} has no Deployment", dir.display()));
        let template_labels = &deployment.value["spec"]["template"]["metadata"]["labels"];
        for document in in_dir() {
            let spec = &document.value["spec"];
            let selector = match document.kind() {
                Some("Deployment" | "PodDisruptionBudget") => &spec["selector"]["matchLabels"],
                Some("Service") => &spec["selector"],
                Some("NetworkPolicy") => &spec["podSelector"]["matchLabels"],
                _ => continue,
            };
            let selector = selector
                .as_mapping()
                .unwrap_or_else(|| panic!("{}: no label selector", document.name()));
            assert!(!selector.is_empty(), "{}: empty selector", document.name());
            for (key, value) in selector {
                assert_eq!(
                    &template_labels[key],
                    value,
                    "{}: selector label {key:?} is not on the pod template of {}",
                    document.name(),
                    deployment.name()
                );
            }
        }
    }
}

#[test]
fn images_match_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    let documents = documents();
    for container in dtredact_containers(&documents) {
        if let Some(image) = container.container["image"].as_str() {
            assert_eq!(
                image,
                format!("dtredact:{version}"),
                "{}: image",
                container.name()
            );
        }
    }
    for dir in LABELLED_DIRS {
        let kustomization = kustomization(&k8s_dir().join(dir)).unwrap();
        let image = kustomization["images"]
            .as_sequence()
            .and_then(|images| {
                images
                    .iter()
                    .find(|i| i["name"].as_str() == Some("dtredact"))
            })
            .unwrap_or_else(|| panic!("k8s/{dir}/kustomization.yaml has no dtredact image"));
        assert_eq!(
            image["newTag"].as_str(),
            Some(version),
            "k8s/{dir}/kustomization.yaml newTag"
        );
    }
}

#[test]
fn kustomizations_list_every_resource() {
    let documents = documents();
    let mut dirs: Vec<PathBuf> = documents
        .iter()
        .filter(|d| d.kind() == Some("Kustomization"))
        .map(|d| d.dir().to_owned())
        .collect();
    dirs.dedup();
    for dir in ["sidecar", "sidecar-fifo", "forwarder", "monitoring"] {
        assert!(
            dirs.contains(&k8s_dir().join(dir)),
            "k8s/{dir} has no kustomization.yaml"
        );
    }
    for dir in &dirs {
        let kustomization = kustomization(dir).unwrap();
        let resources = kustomization_files(dir, &kustomization, "resources");
        for path in resources
            .iter()
            .chain(&kustomization_files(dir, &kustomization, "patches"))
        {
            assert!(path.exists(), "{} does not exist", path.display());
        }
        for document in documents.iter().filter(|d| d.dir() == dir) {
            let file_name = document.path.file_name().unwrap().to_str().unwrap();
            let unlisted = document.kind().is_none()
                || document.kind() == Some("Kustomization")
                || file_name.ends_with(".example.yaml")
                || is_patch(&document.path);
            if !unlisted {
                assert!(
                    resources.contains(&document.path),
                    "{} is not listed in its kustomization.yaml",
                    document.name()
                );
            }
        }
    }
}

#[test]
fn one_resource_per_file() {
    let documents = documents();
    let mut seen = BTreeSet::new();
    for document in &documents {
        assert!(
            seen.insert(document.path.clone()),
            "{} holds more than one document",
            document.name()
        );
    }
}

#[test]
fn forwarder_servicemonitor_matches_monitoring() {
    let documents = documents();
    let find = |path: &str| {
        documents
            .iter()
            .find(|d| d.path == k8s_dir().join(path))
            .unwrap_or_else(|| panic!("k8s/{path} not found"))
    };
    let forwarder = find("forwarder/servicemonitor.yaml");
    let monitoring = find("monitoring/servicemonitor.yaml");
    assert_eq!(
        forwarder.value["metadata"]["name"], monitoring.value["metadata"]["name"],
        "ServiceMonitor names differ, so applying both scrapes twice"
    );
    assert_eq!(
        forwarder.value["spec"], monitoring.value["spec"],
        "ServiceMonitor specs differ"
    );
}

#[test]
fn dockerfile_builds_release_image() {
    let dockerfile = fs::read_to_string(repo_dir().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let has = |line: &str| instructions.contains(&line);
    assert!(has("RUN cargo build --release --locked"), "build command");
    assert!(
        has("FROM gcr.io/distroless/cc-debian12:nonroot"),
        "final stage base image"
    );
    assert!(
        has("COPY --from=build /src/target/release/dtredact /usr/local/bin/dtredact"),
        "binary path"
    );
    assert!(
        has(&format!("USER {NONROOT_ID}:{NONROOT_ID}")),
        "USER matches runAsUser"
    );
    assert!(
        has(r#"ENTRYPOINT ["/usr/local/bin/dtredact"]"#),
        "ENTRYPOINT"
    );
    assert!(
        instructions
            .iter()
            .any(|line| line.starts_with("FROM rust:") && line.ends_with(" AS build")),
        "build stage"
    );

    let ignored = fs::read_to_string(repo_dir().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignored.lines().map(str::trim).collect();
    for entry in ["target/", ".git"] {
        assert!(ignored.contains(&entry), ".dockerignore lacks {entry}");
    }
}
