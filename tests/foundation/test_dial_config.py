"""[dial] and [lines.NAME.dial]: the rules that turn +49... and tel: links into what a line dials."""

from __future__ import annotations

import pytest

from asttapi_server.config import load_config
from asttapi_server.core.dialling import DialRule
from asttapi_server.errors import ConfigError


def config(tmp_path, text: str):
    path = tmp_path / "asttapi.toml"
    path.write_text('[ami]\nhost = "pbx"\n' + text)
    return load_config(str(path))


def test_region_gives_country_and_prefixes_and_lines_inherit_the_global_rule(tmp_path):
    c = config(tmp_path, """
[dial]
region = "de"
outside = "0"
area_code = "30"
own_numbers = ["+49 30 9876 5"]
domains = ["PBX.example.com."]

[lines.line_1]
channel = "PJSIP/bob"
""")
    rule = DialRule(country_code="49", national_prefix="0", international_prefix="00", outside="0",
                    area_code="30", own_numbers=("+493098765",), domains=("pbx.example.com",))
    assert c.dial == rule and c.lines["line_1"].dial == rule


def test_a_lines_keys_win_and_a_line_in_another_country_leaves_the_global_location_behind(tmp_path):
    c = config(tmp_path, """
[dial]
region = "DE"
outside = "0"
area_code = "30"

[lines.berlin]
channel = "PJSIP/bob"
dial = { outside = "9" }

[lines.london]
channel = "PJSIP/al"

[lines.london.dial]
region = "GB"
""")
    assert c.lines["berlin"].dial == DialRule("49", "0", "00", "9", "30")
    # outside is not about where the PBX is: it stays; country, prefixes and area do not.
    assert c.lines["london"].dial == DialRule("44", "0", "00", "0", "")


def test_no_dial_table_no_rule_and_demo_lines_take_the_global_one(tmp_path):
    assert config(tmp_path, "").dial is None
    path = tmp_path / "demo.toml"
    path.write_text('[dial]\ncountry_code = "44"\nnational_prefix = "0"\n')
    demo = load_config(str(path))
    assert demo.demo and all(line.dial == DialRule("44", "0") for line in demo.lines.values())


def test_explicit_prefixes_win_over_the_regions(tmp_path):
    c = config(tmp_path, '[dial]\nregion = "US"\ninternational_prefix = "00"\nnational_prefix = ""\n')
    assert c.dial == DialRule("1", "", "00")


@pytest.mark.parametrize("table, message", [
    ('[dial]\noutside = "0"', "key 'dial': expected 'region' (e.g. \"DE\") or 'country_code'"),
    ('[dial]\nregion = "XX"', "key 'dial.region': expected an ISO country code"),
    ('[dial]\nregion = "DE"\noutside = "0a"', "key 'dial.outside': expected a prefix of digits"),
    ('[dial]\ncountry_code = "+49"', "key 'dial.country_code': expected a country calling code"),
    ('[dial]\nregion = "DE"\nown_numbers = ["030 1234"]', "key 'dial.own_numbers': expected global number"),
    ('[dial]\nregion = "DE"\ndomains = ["not a domain"]', "key 'dial.domains': expected a domain name"),
    ('[dial]\nregion = "DE"\nprefix = "0"', "unknown key 'dial.prefix'"),
    ('[dial]\nregion = "BR"', "key 'dial.international_prefix': expected a prefix: region BR has several"),
    ('[lines.l]\nchannel = "PJSIP/x"\ndial = "0"', "key 'lines.l.dial': expected a table [lines.l.dial]"),
    ('[lines.l]\nchannel = "PJSIP/x"\ndial = { outside = "9" }', "key 'lines.l.dial': expected 'region'"),
])
def test_a_wrong_dial_key_is_one_line_naming_it(tmp_path, table, message):
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, table)
    assert message in str(caught.value) and "\n" not in str(caught.value)
