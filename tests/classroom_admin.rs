//! The classroom example's cache admin: mounted at `/admin/cache` behind
//! its token, warming at start with `--warm`, and its command line.

#[path = "../examples/classroom/app.rs"]
mod app;
#[path = "../examples/classroom/args.rs"]
mod args;
mod support;

use std::time::Duration;

use hyper::{Method, StatusCode};
use support::classroom::{assert_hit, assert_not_hit, example_binary, prometheus, start_example};
use support::deadline::backstop;
use support::http::Server;
use tagcache::Cache;

use app::{router, with_admin, AppConfig, ADMIN_PATH};
use args::{Command, Env};

const TOKEN: &str = "classroom-admin-test-token";

#[tokio::test]
async fn invalidating_a_tag_through_the_admin_makes_the_next_get_a_miss() {
    backstop(async {
        let cache = Cache::builder().cache_name("classroom").build();
        let app = router(AppConfig {
            origin_delay: Duration::ZERO,
            cache: cache.clone(),
            metrics: Some(prometheus()),
        });
        let server = Server::serve(with_admin(app, &cache, TOKEN).unwrap()).await;
        let path = "/api/teachers/4/sessions";
        server.get(path).await;
        assert_hit(&server.get(path).await, "second GET");
        assert_eq!(server.origin_calls("session-list").await, 1);

        let admin = |path: &str| format!("{ADMIN_PATH}{path}");
        let done = server
            .send(
                Method::POST,
                &admin("/invalidate"),
                Some(TOKEN),
                Some(r#"{"tags": ["teacher:4"]}"#),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text());
        assert_not_hit(
            &server.get(path).await,
            "GET after the admin invalidated teacher:4",
        );
        assert_eq!(server.origin_calls("session-list").await, 2);

        let listed = server
            .get_as(&admin("/entries?route=session-list"), TOKEN)
            .await
            .json();
        assert_eq!(listed["entries"][0]["key"], path, "{listed}");
        assert_eq!(
            server.get(&admin("/stats")).await.status,
            StatusCode::UNAUTHORIZED
        );
        let purge_all = server
            .send(
                Method::POST,
                &admin("/purge-all"),
                Some(TOKEN),
                Some(r#"{"confirm": "classroom"}"#),
            )
            .await;
        assert_eq!(purge_all.json()["kind"], "all");
    })
    .await;
}

#[tokio::test]
async fn the_binary_warms_every_teacher_at_start_and_serves_its_admin() {
    let binary = example_binary().await;
    backstop(async {
        let (_child, addr) = start_example(
            &binary,
            &[
                "--listen",
                "127.0.0.1:0",
                "--origin-delay-ms",
                "0",
                "--warm",
                "--admin-token",
                TOKEN,
            ],
        )
        .await;
        let server = Server::connect(addr);
        // Warmed before it listened: ten lists, ten dashboards.
        assert_eq!(server.origin_calls("session-list").await, 10);
        assert_eq!(server.origin_calls("teacher-dashboard").await, 10);
        for tid in [1, 10] {
            assert_hit(
                &server.get(&format!("/api/teachers/{tid}/sessions")).await,
                "a warmed list",
            );
            assert_hit(
                &server.get(&format!("/api/dashboard/teacher/{tid}")).await,
                "a warmed dashboard",
            );
        }
        assert_eq!(server.origin_calls("session-list").await, 10);

        let stats = server.get_as(&format!("{ADMIN_PATH}/stats"), TOKEN).await;
        assert_eq!(stats.status, StatusCode::OK);
        let stats = stats.json();
        assert_eq!(stats["cache"], "classroom");
        assert_eq!(stats["store"]["entries"], 20);
        let unauthorized = server
            .get_as(&format!("{ADMIN_PATH}/stats"), "wrong-token-wrong-token")
            .await;
        assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
        assert_eq!(unauthorized.json()["error"], "unauthorized");
    })
    .await;
}

#[test]
fn the_command_line_takes_a_token_from_a_flag_or_the_environment_and_warm() {
    let parse = |argv: &[&str], env: Env| match args::parse(argv.iter().map(|a| a.to_string()), env)
    {
        Ok(Command::Run(args)) => args,
        other => panic!("{argv:?}: {other:?}"),
    };
    let env = |token: Option<&str>| Env {
        admin_token: token.map(str::to_owned),
        ..Env::default()
    };
    let defaults = parse(&[], env(None));
    assert_eq!((defaults.admin_token, defaults.warm), (None, false));
    let from_env = parse(&[], env(Some("from-the-environment")));
    assert_eq!(
        from_env.admin_token.as_deref(),
        Some("from-the-environment")
    );
    assert_eq!(
        parse(&[], env(Some(""))).admin_token,
        None,
        "empty means unset"
    );
    let flag = parse(
        &["--admin-token", "from-the-flag", "--warm"],
        env(Some("env")),
    );
    assert_eq!(
        (flag.admin_token.as_deref(), flag.warm),
        (Some("from-the-flag"), true)
    );
    let inline = parse(&["--admin-token=inline"], env(None));
    assert_eq!(inline.admin_token.as_deref(), Some("inline"));
    assert!(args::parse(["--admin-token".to_owned()], env(None)).is_err());
    assert!(args::USAGE.contains("--admin-token TOKEN") && args::USAGE.contains("--warm"));
}

#[test]
fn warming_covers_every_teachers_list_and_dashboard() {
    let paths = app::warm_paths();
    assert_eq!(paths.len(), 20);
    assert!(paths.contains(&"/api/teachers/10/sessions".to_owned()));
    assert!(paths.contains(&"/api/dashboard/teacher/1".to_owned()));
}
