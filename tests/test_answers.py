"""Every kind of answer, enumerated: the simulator's fault modes, one serial each.

Each serial's first activation request is answered with one fault (a status of
every class, a success with an odd body, a body cut short, headers dribbled for
ever, a connection closed after the request was read, a proxy's page, and
Exosite issuing the CIK before a proxy answers 502); later requests are
answered normally. One gateway takes them all at once, with and without
``auto_reenable``, and the nodes re-announce until they get a final answer.
Then the invariant of the integrity rules must hold:

- every CIK the simulator issued is in the keystore, or its node is in
  ``needs_reenable``, or gatewayd re-enabled the serial after it (which voids it);
- no node was handed anything but the last CIK the simulator issued to it;
- every serial Exosite was asked about has a record;

and each fault must end where the design table says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEYRING_BACKENDS, MODEL, VENDOR, Gateway
from faults_support import Fleet, MakeNode, issued_by_sn, read_keyring, read_records

from gatewayd.core.model import State
from gatewayd.sim import DROP, Fault, Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOST = "needs_reenable"
"""The issued CIK never arrived whole: a person (or auto_reenable) must re-enable."""

ANSWERS: dict[str, tuple[int | Fault, str]] = {
    # transient, and Exosite never acted: retried until activated
    "T429": (429, "activated"),
    "T500": (500, "activated"),
    "T502": (502, "activated"),
    "T503": (503, "activated"),
    "T504": (504, "activated"),
    "TDROP": (DROP, "activated"),
    # refusals
    "R400": (400, "api_error"),
    "R403": (403, "invalid_vendor_model"),
    "R404": (404, "unknown_serial"),
    # Exosite issued the CIK, and it never arrived whole
    **{f"I-{fault.name}": (fault, LOST) for fault in Fault if fault.issues},
    # a proxy's page in place of Exosite's answer: never taken for a CIK
    "PROXY": (Fault.PROXY_PAGE, LOST),
}

VENDOR_TOKEN = "tok-answers-9921"


@pytest.fixture
def keyring_backend() -> str:
    return KEYRING_BACKENDS["file"]


@pytest.fixture
def fleet(node: MakeNode) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(serials: list[str]) -> Fleet:
        made.append(Fleet(node, serials, first_wait=0.5, cap=2.0))
        return made[-1]

    yield make
    for each in made:
        each.stop()


@pytest.mark.parametrize("auto", [False, True], ids=["by-hand", "auto_reenable"])
def test_every_kind_of_answer_keeps_the_invariant(
    auto: bool,
    tmp_path: Path,
    registry: Registry,
    gateway: Callable[..., Gateway],
    fleet: Callable[..., Fleet],
    capsys: pytest.CaptureFixture[str],
) -> None:
    for sn, (answer, _) in ANSWERS.items():
        registry.add(VENDOR, MODEL, sn)
        registry.script(sn, [answer])
    exosite: dict[str, object] = {"timeout": 1.0}
    if auto:
        token = tmp_path / "vendor-token"
        token.write_text(VENDOR_TOKEN)
        registry.set_vendor_token(VENDOR_TOKEN)
        exosite |= {"auto_reenable": True, "vendor_token_file": str(token)}
    gw = gateway(exosite=exosite)
    gw.start()
    nodes = fleet(list(ANSWERS))
    nodes.start()
    nodes.wait_final(60.0)
    assert gw.stop() == 0
    records = read_records(gw.state_dir)
    stored = read_keyring(gw.state_dir, ANSWERS)
    issued = issued_by_sn(registry)
    ended = {}
    for sn, (answer, _) in ANSWERS.items():
        final = nodes.final()[sn]
        record = records[sn]
        ended[sn] = final.get("reason") or final["status"]
        if record.state is State.NEEDS_REENABLE:
            ended[sn] = LOST
        # no node was handed anything but the last CIK issued to it
        handed = nodes.ciks(sn)
        assert handed <= set(issued.get(sn, [])[-1:]), f"{sn} ({answer}): handed {len(handed)}"
        # every issued CIK is kept, or the node needs re-enabling, or was re-enabled since
        for i, cik in enumerate(issued.get(sn, [])):
            kept = stored.get(sn) == cik
            voided = i < len(issued[sn]) - 1 and registry.manage_calls(sn) > 0
            assert kept or voided or record.state is State.NEEDS_REENABLE, f"{sn}: CIK {i} lost"
        assert registry.calls(sn) >= 1
    expected = {sn: outcome for sn, (_, outcome) in ANSWERS.items()}
    if auto:  # gatewayd re-enables the serial itself, and activates it again
        expected = {sn: "activated" if e == LOST else e for sn, e in expected.items()}
    assert ended == expected
    with capsys.disabled():  # the figure belongs in the CI log
        print(f"\n{len(ANSWERS)} kinds of answer, auto_reenable={auto}: the invariant held")
