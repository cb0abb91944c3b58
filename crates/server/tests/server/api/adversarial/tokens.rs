//! Tokens against the events that must end them: a logout, a password change, a role change, each
//! also raced by a refresh of the same user. A revoked token must be refused for as long as any
//! verifier would otherwise accept it, and a token issued after the event must keep working even
//! within the same second. Each table is a list of cases; add a case with one line.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::helpers::{JWT_SECRET, PASSWORD, TestApp, access, problem};

/// `exp` of an access token at the moment it is logged out, in seconds from then. A token past
/// its `exp` by less than the verifier's leeway is still accepted, so it can be logged out, and
/// reusing it at once is what reusing a token expiring at its logout would be that many seconds
/// later. Each case must be refused from its logout on.
const EXP_AT_LOGOUT: &[i64] = &[-5, -4, -3, -2, -1, 0, 1, 2, 60];

/// An event that must end, at once, every access token of the user issued before it.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// `PATCH /v1/users/me` with a new password, by the first session.
    Password,
    /// The admin role taken away (`strata admin revoke`).
    Demotion,
    /// The admin role given (`strata admin grant`).
    Promotion,
}

/// Every [`Change`] that is tested.
const CHANGES: &[Change] = &[Change::Password, Change::Demotion, Change::Promotion];

/// What a refresh of a session is raced against, and in how many rounds.
#[derive(Debug, Clone, Copy)]
enum Race {
    /// The session's own logout: no refresh token of the session may work afterwards.
    Logout,
    /// A password change by another session: no refresh token of the raced session, and no
    /// access token it was given, may work afterwards.
    PasswordChange,
}

/// `(race, rounds)`.
const RACES: &[(Race, usize)] = &[(Race::Logout, 30), (Race::PasswordChange, 20)];

/// An access and a refresh token of one session.
struct Session {
    access: String,
    refresh: String,
}

impl Session {
    fn of(body: &Value) -> Self {
        Self {
            access: access(body),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }
}

async fn login(app: &TestApp, email: &str, password: &str) -> Session {
    let response = app
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "login of {email}");
    Session::of(&response.json().await.expect("json"))
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post("/v1/auth/refresh", json!({"refresh_token": refresh_token}))
        .await
}

async fn change_password(app: &TestApp, token: &str, from: &str, to: &str) -> reqwest::Response {
    app.request(
        Method::PATCH,
        "/v1/users/me",
        Some(token),
        Some(json!({"password": to, "current_password": from})),
    )
    .await
}

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/v1/users/me", token).await.status()
}

/// An access token for `user_id` signed with the test key, expiring `exp_offset` seconds from now.
fn mint(user_id: &str, exp_offset: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": user_id, "role": "customer", "jti": Uuid::now_v7(), "sid": Uuid::now_v7(),
        "iat": now + exp_offset - 900, "exp": now + exp_offset, "iss": "strata", "aud": "strata-api",
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("signed")
}

#[tokio::test]
async fn a_logged_out_token_is_refused_for_as_long_as_a_verifier_would_accept_it() {
    let app = TestApp::spawn().await;
    let user = app.register("ada@example.com").await;
    let id = user["user"]["id"].as_str().expect("id");
    for &offset in EXP_AT_LOGOUT {
        let token = mint(id, offset);
        let logout = app
            .request(Method::POST, "/v1/auth/logout", Some(&token), None)
            .await;
        // The second may turn between minting and logging out, taking the earliest case past the
        // leeway: then the token is refused as expired already, which is what is wanted.
        if logout.status() != StatusCode::NO_CONTENT {
            assert_eq!(offset, EXP_AT_LOGOUT[0], "exp {offset:+} s: logout refused");
            problem(logout, StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED").await;
            continue;
        }
        let reuse = app.get("/v1/users/me", &token).await;
        assert_eq!(
            reuse.status(),
            StatusCode::UNAUTHORIZED,
            "exp {offset:+} s: a logged-out token was accepted"
        );
    }
}

#[tokio::test]
async fn a_change_ends_every_earlier_access_token_at_once_and_later_ones_work() {
    for &change in CHANGES {
        let app = TestApp::spawn().await;
        let email = "ada@example.com";
        app.register(email).await;
        if matches!(change, Change::Demotion) {
            app.components
                .users
                .grant_admin(email)
                .await
                .expect("granted");
        }
        let (caller, other) = (
            login(&app, email, PASSWORD).await,
            login(&app, email, PASSWORD).await,
        );
        assert_eq!(me(&app, &caller.access).await, StatusCode::OK, "{change:?}");

        let password = match change {
            Change::Password => {
                let changed = change_password(&app, &caller.access, PASSWORD, "a new password");
                assert_eq!(changed.await.status(), StatusCode::OK, "{change:?}");
                "a new password"
            }
            Change::Demotion => {
                app.components
                    .users
                    .revoke_admin(email)
                    .await
                    .expect("revoked");
                PASSWORD
            }
            Change::Promotion => {
                app.components
                    .users
                    .grant_admin(email)
                    .await
                    .expect("granted");
                PASSWORD
            }
        };
        // At once: no sleep, most often within the second of the change.
        for (name, token) in [("caller", &caller.access), ("other", &other.access)] {
            let refused = app.get("/v1/users/me", token).await;
            assert_eq!(
                refused.status(),
                StatusCode::UNAUTHORIZED,
                "{change:?}: the {name}'s earlier token still works"
            );
            problem(refused, StatusCode::UNAUTHORIZED, "TOKEN_REVOKED").await;
        }

        // Tokens issued after the change, in the same second or not, work: the caller's session
        // goes on by a refresh, and a new login works.
        let refreshed = refresh(&app, &caller.refresh).await;
        assert_eq!(refreshed.status(), StatusCode::OK, "{change:?}: refresh");
        let refreshed = Session::of(&refreshed.json().await.expect("json"));
        assert_eq!(
            me(&app, &refreshed.access).await,
            StatusCode::OK,
            "{change:?}"
        );
        let fresh = login(&app, email, password).await;
        assert_eq!(me(&app, &fresh.access).await, StatusCode::OK, "{change:?}");
        let admin_only = app.get("/v1/users", &fresh.access).await.status();
        let expected = match change {
            Change::Password | Change::Demotion => StatusCode::FORBIDDEN,
            Change::Promotion => StatusCode::OK,
        };
        assert_eq!(admin_only, expected, "{change:?}: the new token's role");

        // A password change also ends every other session; a role change ends none.
        let other_refresh = refresh(&app, &other.refresh).await.status();
        let expected = match change {
            Change::Password => StatusCode::UNAUTHORIZED,
            Change::Demotion | Change::Promotion => StatusCode::OK,
        };
        assert_eq!(other_refresh, expected, "{change:?}: the other session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_a_revocation_leaves_nothing_of_the_session_alive() {
    for &(race, rounds) in RACES {
        let app = TestApp::spawn().await;
        let email = "ada@example.com";
        app.register(email).await;
        let mut password = PASSWORD.to_owned();
        let mut refreshed_first = 0;
        for round in 0..rounds {
            let case = format!("{race:?}, round {round}");
            let caller = login(&app, email, &password).await;
            let raced = match race {
                Race::Logout => None,
                Race::PasswordChange => Some(login(&app, email, &password).await),
            };
            let victim = raced.as_ref().unwrap_or(&caller);
            let next = format!("password number {round}");
            let (refreshed, revoked) = tokio::join!(refresh(&app, &victim.refresh), async {
                match race {
                    Race::Logout => {
                        app.request(Method::POST, "/v1/auth/logout", Some(&caller.access), None)
                            .await
                    }
                    Race::PasswordChange => {
                        change_password(&app, &caller.access, &password, &next).await
                    }
                }
            });
            let revoked_status = revoked.status();
            assert!(revoked_status.is_success(), "{case}: {revoked_status}");
            if matches!(race, Race::PasswordChange) {
                password = next;
            }

            assert_eq!(
                refresh(&app, &victim.refresh).await.status(),
                StatusCode::UNAUTHORIZED,
                "{case}: the session's first refresh token"
            );
            if refreshed.status() == StatusCode::OK {
                refreshed_first += 1;
                let successor = Session::of(&refreshed.json().await.expect("json"));
                assert_eq!(
                    refresh(&app, &successor.refresh).await.status(),
                    StatusCode::UNAUTHORIZED,
                    "{case}: the refresh token issued by the racing refresh"
                );
                if matches!(race, Race::PasswordChange) {
                    assert_eq!(
                        me(&app, &successor.access).await,
                        StatusCode::UNAUTHORIZED,
                        "{case}: the access token issued by the racing refresh"
                    );
                }
            }
        }
        eprintln!("{race:?}: the refresh answered 200 in {refreshed_first} of {rounds} rounds");
    }
}
