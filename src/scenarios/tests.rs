use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::*;

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios")
}

fn hr() -> Scenario {
    Scenario::load(&config_dir().join("hr")).expect("the bundled hr scenario loads")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let path = entry.expect("entry").path();
        let dest = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            fs::copy(&path, &dest).expect("copy");
        }
    }
}

/// A scratch copy of the hr scenario that a test may break.
fn scratch_hr() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hr");
    copy_dir(&config_dir().join("hr"), &dir);
    (tmp, dir)
}

#[test]
fn the_bundled_catalog_loads_with_the_hr_scenario() {
    let catalog = Catalog::load(&config_dir()).expect("catalog loads");
    let ids: Vec<&str> = catalog
        .scenarios()
        .map(|s| s.scenario_id.as_str())
        .collect();
    assert!(ids.contains(&"hr"), "{ids:?}");
    assert!(catalog.get("hr").is_some());
    assert!(catalog.get("nope").is_none());
}

#[test]
fn the_hr_scenario_has_tasks_npcs_documents_and_seed_state() {
    let s = hr();
    assert_eq!(s.tool_servers, ["email", "calendar", "hrms"]);
    assert!(s.tasks.len() >= 10, "{} tasks", s.tasks.len());
    assert!(s.tasks.iter().all(|t| t.task_id.starts_with("hr__")));
    assert!(
        s.tasks.windows(2).all(|w| w[0].task_id < w[1].task_id),
        "tasks sorted"
    );
    for d in DIFFICULTIES {
        assert!(s.tasks.iter().any(|t| t.difficulty == *d), "no {d} task");
    }
    assert!(s.npcs.len() >= 6);
    assert!(s
        .npc("lisa-anderson")
        .is_some_and(|n| !n.public_info.is_empty()));
    let files = s.seed_files();
    for f in ["leave_policy.md", "onboarding_policy.md", "org_chart.md"] {
        assert!(files.iter().any(|x| x == f), "{files:?}");
    }
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);
    assert_eq!(
        s.environment.keys().collect::<Vec<_>>(),
        ["calendar", "email", "hrms"]
    );
    let t = s.task("hr__101_approve_leave_request").expect("task 101");
    assert_eq!(t.rubric.scoring.len(), 3);
    assert!(!t.reference_solution.is_empty());
    assert!(s.task("hr__999").is_none());
}

#[test]
fn every_task_round_trips_through_json_and_still_validates() {
    let s = hr();
    for t in &s.tasks {
        let text = serde_json::to_string(t).expect("serialise");
        let back = Task::from_json(&text).expect("parse back");
        assert_eq!(&back, t);
        back.validate(&s).expect("valid");
    }
}

#[test]
fn a_seed_file_is_served_by_its_relative_name() {
    let s = hr();
    let text = s.read_seed_file("leave_policy.md").expect("read");
    assert!(text.starts_with("# Leave Policy"));
    assert_eq!(
        s.read_seed_file("./org_chart.md")
            .map(|t| t.contains("Org Chart")),
        Ok(true)
    );
}

#[test]
fn seed_file_traversal_is_refused_and_a_missing_file_is_not_found() {
    let s = hr();
    for bad in [
        "../scenario.toml",
        "/etc/passwd",
        "a/../../x",
        "..",
        "",
        "..\\x",
        "C:/x",
        "x\0y",
    ] {
        assert!(
            matches!(s.read_seed_file(bad), Err(SeedFileError::Traversal)),
            "{bad:?} -> {:?}",
            s.read_seed_file(bad)
        );
    }
    assert!(matches!(
        s.read_seed_file("missing.md"),
        Err(SeedFileError::NotFound)
    ));
    assert!(matches!(
        s.read_seed_file("sub/missing.md"),
        Err(SeedFileError::NotFound)
    ));
}

#[cfg(unix)]
#[test]
fn a_symlink_escaping_seed_data_is_refused() {
    let (_tmp, dir) = scratch_hr();
    std::os::unix::fs::symlink(dir.join("scenario.toml"), dir.join("seed_data/escape.md"))
        .expect("symlink");
    let s = Scenario::load(&dir).expect("loads");
    assert!(!s.seed_files().contains(&"escape.md".to_string()));
    assert!(matches!(
        s.read_seed_file("escape.md"),
        Err(SeedFileError::Traversal)
    ));
}

#[test]
fn a_task_with_bad_json_is_an_error_naming_the_file() {
    let (tmp, dir) = scratch_hr();
    let file = dir.join("tasks/hr__101_approve_leave_request.json");
    fs::write(&file, "{\"task_id\": ").expect("write");
    let err = Catalog::load(tmp.path()).expect_err("broken").to_string();
    assert!(err.contains("hr__101_approve_leave_request.json"), "{err}");
    assert!(err.contains("invalid JSON"), "{err}");
}

fn edit_task(dir: &Path, task: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let file = dir.join(format!("tasks/{task}.json"));
    let mut v: Value =
        serde_json::from_str(&fs::read_to_string(&file).expect("read")).expect("json");
    edit(&mut v);
    fs::write(&file, serde_json::to_string_pretty(&v).expect("ser")).expect("write");
    file
}

#[test]
fn an_unknown_tool_in_a_reference_solution_is_an_error_naming_file_and_tool() {
    let (tmp, dir) = scratch_hr();
    edit_task(&dir, "hr__101_approve_leave_request", |v| {
        v["reference_solution"][0]["tool_name"] = "teleport_employee".into();
    });
    let err = Catalog::load(tmp.path()).expect_err("broken").to_string();
    assert!(err.contains("hr__101_approve_leave_request.json"), "{err}");
    assert!(
        err.contains("reference_solution[0]") && err.contains("teleport_employee"),
        "{err}"
    );
}

#[test]
fn a_tool_of_a_server_the_task_does_not_use_is_unknown() {
    let s = hr();
    let mut t = s
        .task("hr__105_reporting_line_question")
        .expect("task")
        .clone();
    t.reference_solution.push(SolutionStep {
        tool_name: "send_email".into(),
        parameters: serde_json::json!({}),
    });
    let err = t
        .validate(&s)
        .expect_err("email is not a server of this task");
    assert!(err.contains("send_email"), "{err}");
}

#[test]
fn validation_names_unknown_servers_npcs_and_bad_checks() {
    let s = hr();
    let base = s
        .task("hr__101_approve_leave_request")
        .expect("task")
        .clone();

    let mut t = base.clone();
    t.tool_servers.push("crm".into());
    assert!(t.validate(&s).expect_err("crm").contains("`crm`"));

    let mut t = base.clone();
    t.npc_profile_ids.push("nobody".into());
    assert!(t.validate(&s).expect_err("npc").contains("nobody"));

    let mut t = base.clone();
    t.checks[0].kind = crate::verify::CheckKind::StateCount {
        path: "crm.leads".into(),
        filter: Default::default(),
        equals: Some(1),
        at_least: None,
        at_most: None,
    };
    let err = t.validate(&s).expect_err("bad path");
    assert!(err.contains("checks[0]") && err.contains("crm"), "{err}");

    let mut t = base.clone();
    t.checks[1].id = t.checks[0].id.clone();
    assert!(t.validate(&s).expect_err("dup").contains("duplicate"));

    let mut t = base.clone();
    t.now = "yesterday".into();
    assert!(t.validate(&s).expect_err("now").contains("now"));

    let mut t = base;
    t.difficulty = "extreme".into();
    assert!(t
        .validate(&s)
        .expect_err("difficulty")
        .contains("difficulty"));
}

#[test]
fn a_task_file_whose_id_differs_from_its_name_is_refused() {
    let (tmp, dir) = scratch_hr();
    edit_task(&dir, "hr__102_file_leave_on_behalf", |v| {
        v["task_id"] = "hr__other".into()
    });
    let err = Catalog::load(tmp.path()).expect_err("mismatch").to_string();
    assert!(
        err.contains("hr__102_file_leave_on_behalf.json") && err.contains("hr__other"),
        "{err}"
    );
}

#[test]
fn a_broken_manifest_or_npc_file_names_the_file() {
    let (tmp, dir) = scratch_hr();
    fs::write(dir.join("scenario.toml"), "scenario_id = 3").expect("write");
    let err = Catalog::load(tmp.path()).expect_err("bad toml").to_string();
    assert!(err.contains("scenario.toml"), "{err}");

    let (tmp, dir) = scratch_hr();
    fs::write(dir.join("npcs.json"), "[{\"profile_id\": 1}]").expect("write");
    let err = Catalog::load(tmp.path()).expect_err("bad npcs").to_string();
    assert!(err.contains("npcs.json"), "{err}");
}

#[test]
fn task_tool_servers_accept_the_wire_object_form() {
    let s = hr();
    let mut v = serde_json::to_value(s.task("hr__105_reporting_line_question").expect("task"))
        .expect("ser");
    v["tool_servers"] =
        serde_json::json!([{"name": "hrms", "tool_server_url": "https://<environment-url>/hrms"}]);
    let t: Task = serde_json::from_value(v).expect("object form parses");
    assert_eq!(t.tool_servers, ["hrms"]);
    t.validate(&s).expect("valid");
}

/// A task that became a family keeps its old form as instance 0, so old runs replay
/// unchanged: whatever its instances add to the world, instance 0 adds nothing.
#[test]
fn instance_zero_of_every_bundled_family_plays_in_the_scenarios_own_world() {
    let catalog = Catalog::load(&config_dir()).expect("catalog loads");
    let mut families = 0;
    for scenario in catalog.scenarios() {
        for task in scenario.tasks.iter().filter(|t| t.is_family()) {
            families += 1;
            let zero = task.instance(0).expect("instance 0").into_owned();
            let mut plain = zero.clone();
            plain.environment.clear();
            let state = |t: &Task| scenario.environment(t, 0).expect("environment").state();
            assert_eq!(state(&zero), state(&plain), "{}", task.task_id);
        }
    }
    assert!(families >= 60, "{families} families");
}

/// The instances a scenario keeps are the ones a task builds, whichever is asked first.
#[test]
fn a_scenarios_kept_instance_is_the_one_its_family_builds() {
    let s = hr();
    let family = s.tasks.iter().find(|t| t.is_family()).expect("a family");
    for seed in [0, 7, 7, 12_345] {
        let kept = s.task_instance(&family.task_id, seed).expect("instance");
        let built = family.instance(seed).expect("instance").into_owned();
        assert_eq!(*kept, built, "seed {seed}");
        let again = s.task_instance(&family.task_id, seed).expect("instance");
        assert!(std::sync::Arc::ptr_eq(&kept, &again), "shared, not copied");
    }
    let other = s.task_instance(&family.task_id, 8).expect("instance");
    assert_ne!(
        other,
        s.task_instance(&family.task_id, 7).expect("instance")
    );
    assert!(s.task_instance("no_such_task", 1).is_err());
}

// The verifier bundle of a scenario (crate::verify::bundle).

#[test]
fn given_a_scenario_when_built_twice_then_the_bytes_are_identical() {
    let scenario = hr();
    let a = scenario.verifier_bundle().unwrap();
    let b = scenario.verifier_bundle().unwrap();
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.file_name, "hr_verifiers.zip");
    assert_eq!(a.package, "hr_verifiers");
}

#[test]
fn given_a_scenario_when_built_then_tasks_json_holds_the_checks_the_server_uses() {
    let scenario = hr();
    let bundle = scenario.verifier_bundle().unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bundle.bytes)).unwrap();
    let mut names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "hr_verifiers/README.md",
            "hr_verifiers/__init__.py",
            "hr_verifiers/__main__.py",
            "hr_verifiers/checks.py",
            "hr_verifiers/family.py",
            "hr_verifiers/paths.py",
            "hr_verifiers/tasks.json",
            "hr_verifiers/text.py",
        ]
    );
    let mut text = String::new();
    archive
        .by_name("hr_verifiers/tasks.json")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["scenario_id"], "hr");
    let tasks = file["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), scenario.tasks.len());
    for (entry, task) in tasks.iter().zip(&scenario.tasks) {
        assert_eq!(entry["task_id"], task.task_id.as_str());
        let checks: Vec<crate::verify::Check> =
            serde_json::from_value(entry["checks"].clone()).unwrap();
        assert_eq!(checks, task.checks, "{}", task.task_id);
        let scoring: crate::verify::ScoringRule =
            serde_json::from_value(entry["scoring"].clone()).unwrap();
        assert_eq!(scoring, task.scoring);
    }
}

#[test]
fn given_a_scenario_without_checks_when_built_then_it_is_refused() {
    let mut scenario = hr();
    scenario.tasks.clear();
    assert!(
        matches!(scenario.verifier_bundle(), Err(crate::verify::bundle::BundleError::NoChecks(id)) if id == "hr")
    );
}

#[test]
fn every_catalog_task_with_npc_behaviour_names_npcs_of_its_scenario() {
    let c = Catalog::load(&config_dir()).expect("catalog");
    for s in c.scenarios() {
        for t in &s.tasks {
            for id in t.npc_behaviour.keys() {
                assert!(s.npc(id).is_some(), "{}: {id}", t.task_id);
            }
        }
    }
}
