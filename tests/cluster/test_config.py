"""``[cluster]`` in the config file, and the Redis URL forms (asttapi_server.cluster.address)."""

from __future__ import annotations

import pytest

from asttapi_server.cluster.address import RedisAddress, parse_redis_url
from asttapi_server.config import load_config
from asttapi_server.errors import ConfigError
from asttapi_server.settings import Expected


@pytest.mark.parametrize("url,expected", [
    ("redis://127.0.0.1", RedisAddress((("127.0.0.1", 6379),))),
    ("redis://redis.example.com:6380/2", RedisAddress((("redis.example.com", 6380),), db=2)),
    ("rediss://[::1]:6390/", RedisAddress((("::1", 6390),), tls=True)),
    ("sentinel://s1,s2:26380/mymaster", RedisAddress((("s1", 26379), ("s2", 26380)), service="mymaster")),
    ("sentinels://s1:1/mymaster/3", RedisAddress((("s1", 1),), db=3, tls=True, service="mymaster")),
    ("REDIS://h", RedisAddress((("h", 6379),))),
])
def test_the_url_forms(url, expected):
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize("url,why", [
    ("redis://user:hunter2@h:6379", "without credentials"),
    ("redis://:hunter2@h", "without credentials"),
    ("http://h", "a Redis URL"),
    ("redis://", "no host"),
    ("redis://h:0", "bad port"),
    ("redis://h:99999", "bad port"),
    ("redis://h/x", "database is a number"),
    ("redis://h,i", "need sentinel"),
    ("redis://h/1?timeout=3", "no query string"),
    ("sentinel://s1/", "service name"),
    ("sentinel://s1,s1/m", "named twice"),
    ("sentinel:///m", "no Sentinel host"),
    ("redis://bad host", "bad host"),
    (6379, "a Redis URL"),
])
def test_bad_urls_say_why_and_never_echo_a_password(url, why):
    with pytest.raises(Expected) as e:
        parse_redis_url(url)
    assert why in str(e.value) and "hunter2" not in str(e.value)


def write(tmp_path, text):
    path = tmp_path / "asttapi.toml"
    path.write_text('[ami]\nhost = "pbx"\n' + text)
    return str(path)


def test_no_cluster_table_changes_nothing(tmp_path):
    assert load_config(write(tmp_path, "")).cluster is None


def test_a_cluster_table(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    config = load_config(write(tmp_path, f'''
[cluster]
redis = "sentinel://10.0.0.1,10.0.0.2/asttapi/1"
node = "node-a"
username = "asttapi"
password_file = "{tmp_path / 'pw'}"
lease_ttl = 3.0
lease_renew = 0.75
'''))
    c = config.cluster
    assert c.redis.sentinel and c.redis.db == 1 and c.node == "node-a" and c.username == "asttapi"
    assert c.password == "s3cret" and "s3cret" not in repr(c)
    assert (c.lease_ttl, c.lease_renew, c.prefix, c.stream_max_len) == (3.0, 0.75, "asttapi", 100_000)


@pytest.mark.parametrize("table,message", [
    ('node = "a"', "key 'cluster.redis': expected a Redis URL"),
    ('redis = "redis://h"', "key 'cluster.node': expected a non-empty string, but it is missing"),
    ('redis = "redis://h"\nnode = "a b"', "key 'cluster.node': expected a node name"),
    ('redis = "redis://u:p@h"\nnode = "a"', "without credentials"),
    ('redis = "redis://h"\nnode = "a"\npassword = "x"', "unknown key 'cluster.password'"),
    ('redis = "redis://h"\nnode = "a"\npassword_file = "/nonexistent/pw"', "key 'cluster.password_file': cannot read"),
    ('redis = "redis://h"\nnode = "a"\nlease_ttl = 1.0\nlease_renew = 1.0', "renewal interval well under"),
    ('redis = "redis://h"\nnode = "a"\ntls_ca_file = "/etc/hosts"', "only for rediss://"),
    ('redis = "redis://h"\nnode = "a"\nprefix = "a{b}"', "key 'cluster.prefix'"),
    ('redis = "redis://h"\nnode = "a"\nstream_max_len = 5', "key 'cluster.stream_max_len'"),
])
def test_a_wrong_cluster_table_is_one_clear_line(tmp_path, table, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[cluster]\n" + table + "\n"))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_example_in_docs_scaling_loads_as_written(tmp_path):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "redis-password").write_text("x" * 20)
    block = block.replace("/etc/asttapi/redis-password", str(tmp_path / "redis-password"))
    config = load_config(write(tmp_path, block))
    c = config.cluster
    assert c.redis.sentinel and c.redis.service == "asttapi" and len(c.redis.hosts) == 2
    assert (c.node, c.username, c.lease_ttl, c.lease_renew) == ("a", "asttapi", 2.0, 0.5)
