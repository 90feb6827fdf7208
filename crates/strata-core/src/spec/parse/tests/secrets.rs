//! `[secrets]`: where each secret goes, never its value.

use super::*;

#[test]
fn secrets_name_where_a_value_goes_never_the_value() {
    let spec = only_service(
        "[service.hello]\ndriver = \"container\"\nartifact = \"build/hello.tar\"\n[service.hello.secrets]\nDB_PASSWORD = { env = \"DB_PASSWORD\" }\n\"tls.key\" = { file = \"/run/secrets/tls.key\" }\n",
    );
    use crate::secret::SecretTarget;
    assert_eq!(
        spec.secrets,
        BTreeMap::from([
            (
                "DB_PASSWORD".to_string(),
                SecretTarget::Env("DB_PASSWORD".into())
            ),
            (
                "tls.key".to_string(),
                SecretTarget::File("/run/secrets/tls.key".into())
            ),
        ])
    );
    // Empty secrets leave the JSON (and so old releases' hashes) as they were.
    let plain = only_service("[service.hello]\nartifact = \"build/hello\"\n");
    assert!(serde_json::to_value(&plain)
        .unwrap()
        .get("secrets")
        .is_none());

    #[rustfmt::skip]
    let cases: &[(&str, Expected)] = &[
        (
            "[service.hello.secrets]\nDB_PASSWORD = \"hunter2\"\n",
            (4, 15, "service.hello.secrets.DB_PASSWORD",
             "`service.hello.secrets.DB_PASSWORD` must be a table with `env` or `file`, found a string",
             "a spec names where a secret goes, never its value (that is `strata secret set`): `DB_PASSWORD = { env = \"DB_PASSWORD\" }` or `DB_PASSWORD = { file = \"/run/secrets/db_password\" }`"),
        ),
        (
            "[service.hello.secrets]\n\"db/pw\" = { env = \"DB\" }\n",
            (4, 1, "service.hello.secrets.\"db/pw\"", "`db/pw` is not a valid secret name",
             crate::secret::SECRET_NAME_RULE),
        ),
        (
            "[service.hello.secrets]\nDB = { env = \"STRATA_DB\" }\n",
            (4, 14, "service.hello.secrets.DB.env",
             "`STRATA_DB` is set by the platform and cannot be configured",
             "`HOST` and names starting with `STRATA_` are the platform's (`STRATA_SERVICE`, `STRATA_ENV`, ...); rename it"),
        ),
        (
            "[service.hello.secrets]\nDB = { env = \"DB\", file = \"/run/secrets/db\" }\n",
            (4, 6, "service.hello.secrets.DB",
             "`service.hello.secrets.DB` must name one place: `env` or `file`",
             "for example `DB = { env = \"DB\" }` or `DB = { file = \"/run/secrets/db\" }`"),
        ),
        (
            "[service.hello.secrets]\nDB = { envv = \"DB\" }\n",
            (4, 8, "service.hello.secrets.DB.envv", "unknown key `service.hello.secrets.DB.envv`",
             "did you mean `env`? `DB = { env = \"DB\" }` or `DB = { file = \"/run/secrets/db\" }`"),
        ),
        (
            "[service.hello.secrets]\nDB = { file = \"/run/secrets/db\" }\n",
            (4, 1, "service.hello.secrets.DB",
             "secret `DB` is delivered as a file, which the `exec` driver cannot show only to its instance",
             "deliver it as an environment variable: `DB = { env = \"DB\" }` (files need the container driver's own filesystem)"),
        ),
        (
            "[service.hello.config]\nDB = \"x\"\n[service.hello.secrets]\nDB = { env = \"DB\" }\n",
            (6, 1, "service.hello.secrets.DB", "`DB` is set by both `[config]` and secret `DB`",
             "remove `DB` from the config, or deliver the secret to another variable"),
        ),
        (
            "[service.hello.secrets]\nA = { env = \"X\" }\nB = { env = \"X\" }\n",
            (5, 1, "service.hello.secrets.B", "secrets `A` and `B` are both delivered to env X",
             "give each secret its own variable or file"),
        ),
    ];
    for &(body, expected) in cases {
        assert_service_error(body, expected);
    }
    let file = error(
        "[service.hello]\ndriver = \"container\"\nartifact = \"a.tar\"\n[service.hello.secrets]\nDB = { file = \"/etc/shadow\" }\n",
    );
    assert!(file.message.contains("under `/etc`"), "{}", file.message);
}
