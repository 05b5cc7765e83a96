//! Plugin module files the router must refuse at once (a FIFO, a 100 MiB file, a symlink to
//! `/dev/zero`), the `[plugins]` bounds and compile deadline, and the router's own compile
//! cache directory: run through the real `webhook-router` binary where a user would meet them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use webhook_router::config::CompileCache;
use webhook_router::plugin::engine::PluginEngine;
use webhook_router::plugin::module::{ModuleError, compile_within, read_module};
use webhook_router_tests::wasm::module;

/// How long `check` may take to refuse a bad module.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// A fresh directory for test `name`.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("module-bounds")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A config in `dir` whose one route runs the plugin `module`, with `plugins` as its
/// `[plugins]` table (empty: none).
fn write_config(dir: &Path, name: &str, module: &Path, plugins: &str) -> PathBuf {
    let text = format!(
        "[server]\nadmin_token = \"t\"\n{plugins}\n\
         [destinations.ci]\nurl = \"http://127.0.0.1:9000/ci\"\n\n\
         [[routes]]\nid = \"github\"\npath = \"/hooks/github\"\ndestinations = [\"ci\"]\n\n\
         [[routes.plugins]]\nmodule = \"{}\"\n",
        module.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs `webhook-router ARGS` with `home` as its `HOME` (its default compile cache is under
/// it), killing it if it has not answered within `patience`; its output and how long it took.
fn run_within(args: &[&str], home: &Path, patience: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run webhook-router");
    loop {
        if child.try_wait().expect("wait").is_some() {
            let output = child.wait_with_output().expect("output");
            return (output, started.elapsed());
        }
        if started.elapsed() > patience {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "webhook-router {args:?} did not answer within {patience:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_fifo_a_100_mib_file_and_a_link_to_dev_zero_each_get_one_line_from_check_within_2_s() {
    let dir = fresh_dir("acceptance");
    let fifo = dir.join("fifo.wasm");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    // 100 MiB, sparse, starting as a component does: refused for its size, not its contents.
    let huge = dir.join("huge.wasm");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&huge).expect("create");
        file.write_all(b"\0asm\x0d\0\x01\0").expect("write header");
        file.set_len(100 * 1024 * 1024).expect("set_len");
    }
    let zero = dir.join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");

    for (module, reason) in [
        (&fifo, "is a FIFO, not a regular file"),
        (&huge, "is larger than max_module_bytes (64.0 MiB)"),
        (&zero, "is a character device, not a regular file"),
    ] {
        let name = module.file_stem().expect("stem").to_string_lossy();
        let config = write_config(&dir, &format!("{name}.toml"), module, "");
        let config_arg = config.display().to_string();
        let (output, took) = run_within(&["check", "--config", &config_arg], &dir, ANSWER_WITHIN);
        let stderr = text(&output.stderr);
        eprintln!("check on {name}: {took:.0?}: {}", stderr.trim_end());
        assert!(!output.status.success(), "{name} is refused");
        assert_eq!(text(&output.stdout), "", "{name}");
        assert_eq!(stderr.lines().count(), 1, "one line for {name}: {stderr}");
        assert!(
            stderr.starts_with(&format!("{config_arg}:")),
            "names the file: {stderr}"
        );
        assert!(stderr.contains("routes[0].plugins[0]"), "{stderr}");
        assert!(
            stderr.contains(&format!("plugin module {} {reason}", module.display())),
            "{stderr}"
        );
        assert!(took < ANSWER_WITHIN, "{name}: {took:?}");

        // `plugin inspect` and `plugin run` refuse it as quickly.
        let module_arg = module.display().to_string();
        for args in [
            vec!["plugin", "inspect", module_arg.as_str()],
            vec!["plugin", "run", module_arg.as_str(), "--event", "/dev/null"],
        ] {
            let (output, took) = run_within(&args, &dir, ANSWER_WITHIN);
            let stderr = text(&output.stderr);
            assert!(!output.status.success(), "{args:?}");
            assert!(stderr.contains(reason), "{args:?}: {stderr}");
            assert!(took < ANSWER_WITHIN, "{args:?}: {took:?}");
        }
    }
}

#[test]
fn a_symlink_to_a_module_is_followed_and_its_code_cached_in_a_new_0700_directory() {
    let dir = fresh_dir("symlink-and-cache");
    let link = dir.join("linked.wasm");
    std::os::unix::fs::symlink(module("event_filter"), &link).expect("symlink");
    // A relative cache path is relative to the config file.
    let config = write_config(
        &dir,
        "router.toml",
        &link,
        "[plugins]\ncache = \"compiled\"\n",
    );
    let config_arg = config.display().to_string();
    let (output, _) = run_within(
        &["check", "--config", &config_arg],
        &dir,
        Duration::from_secs(120),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "ok\n");
    let cache = dir.join("compiled");
    let mode = std::fs::metadata(&cache)
        .expect("the cache directory is created")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    assert!(
        files_under(&cache) > 0,
        "wasmtime wrote the compiled module into the router's directory"
    );
    // Nothing went to the shared directory wasmtime would use by default.
    assert!(!dir.join(".cache/wasmtime").exists());
}

#[test]
fn a_cache_directory_others_may_write_to_is_not_used() {
    let dir = fresh_dir("open-cache");
    let cache = dir.join("shared");
    std::fs::create_dir(&cache).expect("create");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let plugins = format!("[plugins]\ncache = \"{}\"\n", cache.display());
    let config = write_config(&dir, "router.toml", &module("event_filter"), &plugins);
    let (output, _) = run_within(
        &["check", "--config", &config.display().to_string()],
        &dir,
        Duration::from_secs(120),
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(text(&output.stdout), "ok\n");
    assert!(
        stderr.contains(&format!(
            "plugin compile cache off: {} is writable by group or others (mode 777); make it 0700",
            cache.display()
        )),
        "{stderr}"
    );
    assert_eq!(files_under(&cache), 0, "nothing was cached there");
}

#[test]
fn max_module_bytes_refuses_a_real_module_over_it_and_its_range_is_checked() {
    let dir = fresh_dir("max-module-bytes");
    let module = module("event_filter");
    let config = write_config(
        &dir,
        "small.toml",
        &module,
        "[plugins]\nmax_module_bytes = \"1KiB\"\n",
    );
    let (output, _) = run_within(
        &["check", "--config", &config.display().to_string()],
        &dir,
        ANSWER_WITHIN,
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "plugin module {} is larger than max_module_bytes (1.0 KiB)",
            module.display()
        )),
        "{stderr}"
    );

    for (plugins, expected) in [
        (
            "[plugins]\nmax_module_bytes = \"2GiB\"\n",
            "max_module_bytes = 2.0 GiB is out of range: must be between 1.0 KiB and 1.0 GiB",
        ),
        (
            "[plugins]\ncompile_timeout = \"10ms\"\n",
            "compile_timeout = 10ms is out of range: must be between 1s and 1h",
        ),
        (
            "[plugins]\ncache = \"\"\n",
            "cache must be \"off\" or a directory",
        ),
        ("[plugins]\ncahce = \"off\"\n", "cahce"),
    ] {
        let config = write_config(&dir, "bad.toml", &module, plugins);
        let (output, _) = run_within(
            &["check", "--config", &config.display().to_string()],
            &dir,
            ANSWER_WITHIN,
        );
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{plugins}");
        assert!(stderr.contains("bad.toml:"), "{stderr}");
        assert!(stderr.contains(expected), "{plugins}: {stderr}");
    }
}

#[tokio::test]
async fn a_compile_past_its_deadline_fails_at_the_deadline_and_a_later_one_succeeds() {
    let path = module("event_filter");
    let wasm = read_module(&path, 64 * 1024 * 1024).expect("read");
    // No cache: the compile is real work, not a lookup (the first caller's setting holds for
    // this test process).
    let engine = PluginEngine::shared(&CompileCache::Off).expect("engine");
    let started = Instant::now();
    let error = compile_within(engine, wasm.clone(), &path, Duration::from_millis(1))
        .await
        .expect_err("1 ms is too short to compile a component");
    let took = started.elapsed();
    assert!(matches!(error, ModuleError::Timeout { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("took longer than compile_timeout (1ms)"),
        "{error}"
    );
    assert!(
        took < Duration::from_millis(500),
        "answered at the deadline: {took:?}"
    );
    // The engine is not held up by the compile left running in the background.
    compile_within(engine, wasm, &path, Duration::from_secs(120))
        .await
        .expect("compiles within a generous deadline");
}

#[test]
fn check_gives_up_on_a_slow_compile_at_compile_timeout_and_exits_without_waiting_for_it() {
    // The Python example (componentize-py, about 18 MB) takes many seconds to compile: built by
    // `examples/plugins/build.sh`, found where `tests/run.sh` and `env.sh` point.
    let languages = std::env::var_os("WEBHOOK_ROUTER_LANGUAGES_DIR").expect(
        "WEBHOOK_ROUTER_LANGUAGES_DIR names the built language examples (tests/run.sh sets it)",
    );
    let python = PathBuf::from(languages).join("bot_filter_python.wasm");
    assert!(python.is_file(), "no {}", python.display());
    let dir = fresh_dir("compile-timeout");
    // No cache, so the compile is real work whatever ran before.
    let plugins = "[plugins]\ncache = \"off\"\ncompile_timeout = \"1s\"\n";
    let config = write_config(&dir, "slow.toml", &python, plugins);
    let (output, took) = run_within(
        &["check", "--config", &config.display().to_string()],
        &dir,
        Duration::from_secs(30),
    );
    let stderr = text(&output.stderr);
    eprintln!(
        "check on the Python example: {took:.1?}: {}",
        stderr.trim_end()
    );
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "compiling plugin module {} took longer than compile_timeout (1s)",
            python.display()
        )),
        "{stderr}"
    );
    // Answered at the deadline, the compile left behind: not after it finished.
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Files anywhere under `dir`.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .map(|path| if path.is_dir() { files_under(&path) } else { 1 })
        .sum()
}
