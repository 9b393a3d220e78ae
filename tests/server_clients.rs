//! Real clients against our CardDAV server on a loopback socket: vdirsyncer's own CardDAV
//! storage suite, vdirsyncer 0.21 two-way sync with a filesystem vdir (reflected in the CRM),
//! and khard reading the synced vdir.
#![allow(clippy::unwrap_used)]

mod server_support;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cardbridge::crm::{Acl, Crm, PersonFields, Visibility};
use cardbridge::server::{app, AppState, ServerConfig};

async fn serve() -> (String, Arc<Crm>) {
    let crm = server_support::crm().await;
    crm.create_user(server_support::user("alice", "alice-pw", None))
        .await
        .unwrap();
    let state = AppState::new(crm.clone(), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}"), crm)
}

async fn run(mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "command failed ({}):\n{text}",
        out.status
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdirsyncer_storage_suite_passes() {
    let (base, _crm) = serve().await;
    let out = run(support::vdirsyncer_suite(
        &format!("{base}/"),
        Some(("alice", "alice-pw")),
    ))
    .await;
    assert!(out.contains("passed"), "{out}");
    assert!(!out.contains("failed"), "{out}");
}

fn vdirsyncer(cfg: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(support::vdirsyncer());
    c.arg("-c").arg(cfg).args(args);
    c
}

fn vcf_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".vcf"))
        .collect();
    v.sort();
    v
}

async fn names(crm: &Crm) -> Vec<String> {
    let mut v: Vec<String> = crm
        .list_persons(None, 100)
        .await
        .unwrap()
        .persons
        .into_iter()
        .map(|p| p.name)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdirsyncer_two_way_sync_and_khard() {
    let (base, crm) = serve().await;
    let alice = crm.user_by_login("alice").await.unwrap().unwrap();
    let from_crm = crm
        .create_person(
            PersonFields {
                name: "Grace Hopper".into(),
                first_name: "Grace".into(),
                last_name: "Hopper".into(),
                ..Default::default()
            },
            Acl {
                owner_id: alice.id,
                followers: vec![],
                visible_to: Visibility::OwnerFollowers,
            },
        )
        .await
        .unwrap();
    // A person that stays, so that no side ever becomes completely empty (vdirsyncer refuses
    // to sync a storage that was emptied, as a safety measure).
    crm.create_person(
        PersonFields {
            name: "Keeper".into(),
            ..Default::default()
        },
        Acl {
            owner_id: alice.id,
            followers: vec![],
            visible_to: Visibility::OwnerFollowers,
        },
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let vdir = tmp.path().join("vdir");
    std::fs::create_dir_all(&vdir).unwrap();
    let cfg = tmp.path().join("vdirsyncer.conf");
    std::fs::write(
        &cfg,
        format!(
            r#"[general]
status_path = "{status}"

[pair contacts]
a = "crm"
b = "local"
collections = null
conflict_resolution = "a wins"

[storage crm]
type = "carddav"
url = "{base}/dav/addressbooks/alice/persons/"
username = "alice"
password = "alice-pw"

[storage local]
type = "filesystem"
path = "{vdir}"
fileext = ".vcf"
"#,
            status = tmp.path().join("status").display(),
            vdir = vdir.display()
        ),
    )
    .unwrap();
    run(vdirsyncer(&cfg, &["discover"])).await;
    run(vdirsyncer(&cfg, &["sync"])).await;
    // CRM → vdir.
    let files = vcf_files(&vdir);
    assert_eq!(files.len(), 2, "{files:?}");
    let grace_file = files
        .iter()
        .map(|f| vdir.join(f))
        .find(|f| std::fs::read_to_string(f).unwrap().contains("Grace"))
        .unwrap();
    assert!(std::fs::read_to_string(&grace_file)
        .unwrap()
        .contains("FN:Grace Hopper"));

    // vdir create → CRM.
    let local = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:local-1\r\nFN:Alan Turing\r\nN:Turing;Alan;;;\r\nEMAIL;TYPE=INTERNET:alan@example.com\r\nX-CUSTOM:kept\r\nEND:VCARD\r\n";
    std::fs::write(vdir.join("local-1.vcf"), local).unwrap();
    run(vdirsyncer(&cfg, &["sync"])).await;
    assert_eq!(
        names(&crm).await,
        vec!["Alan Turing", "Grace Hopper", "Keeper"]
    );

    // vdir edit → CRM.
    std::fs::write(
        vdir.join("local-1.vcf"),
        local.replace("FN:Alan Turing", "FN:Alan M. Turing"),
    )
    .unwrap();
    run(vdirsyncer(&cfg, &["sync"])).await;
    assert_eq!(
        names(&crm).await,
        vec!["Alan M. Turing", "Grace Hopper", "Keeper"]
    );

    // CRM edit → vdir (merged into the card; unmodeled properties kept).
    let alan = crm
        .list_persons(None, 10)
        .await
        .unwrap()
        .persons
        .into_iter()
        .find(|p| p.name.starts_with("Alan"))
        .unwrap();
    let mut f = alan.fields();
    f.job_title = "Cryptanalyst".into();
    crm.update_person(alan.id, alan.version, f, alan.acl())
        .await
        .unwrap();
    run(vdirsyncer(&cfg, &["sync"])).await;
    let text = std::fs::read_to_string(vdir.join("local-1.vcf")).unwrap();
    assert!(text.contains("TITLE:Cryptanalyst"), "{text}");
    assert!(text.contains("X-CUSTOM:kept"), "{text}");

    // khard lists and shows the synced contacts.
    let kcfg = tmp.path().join("khard.conf");
    std::fs::write(
        &kcfg,
        format!(
            "[addressbooks]\n[[crm]]\npath = {}\n\n[general]\ndebug = no\ndefault_action = list\neditor = /bin/true\nmerge_editor = /bin/true\n",
            vdir.display()
        ),
    )
    .unwrap();
    let mut k = Command::new(support::khard());
    k.arg("-c").arg(&kcfg).arg("list");
    let listed = run(k).await;
    assert!(
        listed.contains("Grace") && listed.contains("Alan"),
        "{listed}"
    );
    let mut k = Command::new(support::khard());
    k.arg("-c").arg(&kcfg).args(["show", "Turing"]);
    let shown = run(k).await;
    assert!(shown.contains("Cryptanalyst"), "{shown}");

    // vdir delete → CRM; CRM delete → vdir.
    std::fs::remove_file(&grace_file).unwrap();
    run(vdirsyncer(&cfg, &["sync"])).await;
    assert!(crm.get_person(from_crm.id).await.unwrap().is_none());
    crm.delete_person(alan.id, None).await.unwrap();
    run(vdirsyncer(&cfg, &["sync"])).await;
    assert_eq!(vcf_files(&vdir).len(), 1, "{:?}", vcf_files(&vdir));
    assert_eq!(names(&crm).await, vec!["Keeper"]);
}
