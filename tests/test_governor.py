"""The governor: each condition with its signal faked at the boundary, hysteresis, the decisions
the run loop reports, and the throttler stopping and continuing real processes."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from dcp_worker.errors import UsageError
from dcp_worker.governor.activity import Idle, X11Idle, terminal_idle
from dcp_worker.governor.governor import MANUAL_PAUSE, Decision, Governor, Sources
from dcp_worker.governor.power import on_battery
from dcp_worker.governor.proc import (
    CpuSample,
    MemorySample,
    ProcessStat,
    process_stat,
    process_tree,
    read_cpu,
    read_memory,
)
from dcp_worker.governor.settings import OPTION_FIELDS, OPTION_HELP, GovernorSettings, parse_hours
from dcp_worker.governor.throttle import Throttler

MIB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
# Tuesday 1 December 2026, 12:00 local time.
NOON_TUESDAY = datetime(2026, 12, 1, 12, 0)


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def governor(
    max_sandboxes: int = 4,
    hosts: Callable[[], Sequence[int]] = tuple,
    clock: Clock | None = None,
    sources: Sources | None = None,
    **settings: object,
) -> Governor:
    return Governor(
        GovernorSettings.from_options(settings),
        max_sandboxes,
        hosts=hosts,
        sources=sources or Sources(),
        clock=clock or Clock(),
    )


def loads(values: list[float]) -> Callable[[], tuple[float, float, float]]:
    """A load-average source reading ``values`` (1, 5 and 15 minutes) as they are now."""
    return lambda: (values[0], values[1], values[2])


# -- settings ---------------------------------------------------------------------------------------


def test_by_default_nothing_limits_the_worker() -> None:
    default = governor(max_sandboxes=3)
    assert default.conditions == []
    decision = default.evaluate()
    assert (decision.sandboxes, decision.fetch, decision.cpu_cap, decision.reasons) == (3, True, 100.0, ())
    assert not decision.give_back


def test_options_are_read_from_strings_and_toml_values() -> None:
    settings = GovernorSettings.from_options(
        {
            "maxLoad": "3.5",
            "loadPeriod": 5,
            "maxOtherCpu": "60",
            "cpuCap": 50,
            "hours": ["Mon-Fri 18:00-08:00", "Sat Sun 00:00-24:00"],
            "maxMemoryShare": "0.25",
            "pauseOnBattery": "yes",
            "pauseWhenUserActive": "45",
            "resumeWithin": "600",
            "resumeAfter": 0,
            "governorInterval": "2",
        }
    )
    assert settings.max_load == 3.5 and settings.load_period == 5 and settings.max_other_cpu == 60
    assert settings.cpu_cap == 50 and settings.max_memory_share == 0.25 and settings.pause_on_battery
    assert settings.pause_when_user_active == 45 and settings.resume_within == 600
    assert settings.resume_after == 0 and settings.poll_interval == 2
    assert [str(window) for window in settings.hours] == [
        "Mon Tue Wed Thu Fri 18:00-08:00",
        "Sat Sun 00:00-24:00",
    ]
    assert settings.as_options()["hours"] == "Mon Tue Wed Thu Fri 18:00-08:00, Sat Sun 00:00-24:00"


def test_every_option_has_a_field_and_a_help_line_giving_its_default() -> None:
    names = set(GovernorSettings.__dataclass_fields__)
    assert set(OPTION_FIELDS.values()) == names and len(OPTION_FIELDS) == len(names)
    assert set(OPTION_HELP) == set(OPTION_FIELDS)
    assert all("[default: " in help for _, help in OPTION_HELP.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"maxLoad": "-1"}, "maxLoad: expected a load average above 0, not -1"),
        ({"maxLoad": "high"}, "maxLoad: expected a load average above 0, not 'high'"),
        ({"cpuCap": "0"}, "cpuCap: expected a percentage above 0, at most 100, not 0"),
        ({"cpuCap": 150}, "cpuCap: expected a percentage above 0, at most 100, not 150"),
        ({"maxOtherCpu": "nan"}, "maxOtherCpu: expected a percentage from 0 to 100, not nan"),
        ({"maxMemoryShare": "1.5"}, "maxMemoryShare: expected a fraction of RAM above 0, at most 1, not 1.5"),
        ({"pauseOnBattery": "maybe"}, "pauseOnBattery: expected true or false, not 'maybe'"),
        ({"pauseWhenUserActive": 0}, "pauseWhenUserActive: expected seconds of idleness above 0, not 0"),
        ({"loadPeriod": "2"}, "loadPeriod: expected 1, 5 or 15 (minutes), not 2"),
        ({"resumeWithin": True}, "resumeWithin: expected seconds, 0 or more, not True"),
        ({"hours": "25:00-07:00"}, "hours: '25:00' is not a time of day"),
        ({"hours": "22:00-07:60"}, "hours: '07:60' is not a time of day"),
        ({"hours": "22-07"}, "hours: expected a time HH:MM, not '22'"),
        ({"hours": "22:00"}, "hours: expected a time range HH:MM-HH:MM, not '22:00'"),
        (
            {"hours": "Mon-Fry 09:00-17:00"},
            "hours: expected a day such as Mon or a range such as Mon-Fri, not 'Mon-Fry'",
        ),
        (
            {"hours": "08:00-08:00"},
            "hours: '08:00-08:00' is an empty window (use 00:00-24:00 for a whole day)",
        ),
        (
            {"hours": "09:00-17:00,"},
            "hours: expected windows such as 'Mon-Fri 22:00-07:00', not '09:00-17:00,'",
        ),
        ({"hours": 9}, "hours: expected windows such as 'Mon-Fri 22:00-07:00', not 9"),
        ({"maxload": 3}, "unknown governor option 'maxload'"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        GovernorSettings.from_options(options)
    assert str(caught.value) == message


def test_the_dataclass_validates_values_given_directly() -> None:
    with pytest.raises(UsageError, match=r"^cpuCap: expected a percentage above 0, at most 100, not 101$"):
        GovernorSettings(cpu_cap=101)
    with pytest.raises(UsageError, match=r"^resumeAfter: expected seconds, 0 or more, not -5$"):
        GovernorSettings(resume_after=-5)


def test_hours_windows_cross_midnight_and_belong_to_the_day_they_start() -> None:
    (night,) = parse_hours("22:00-07:00")
    assert night.contains(NOON_TUESDAY.replace(hour=23))
    assert night.contains(NOON_TUESDAY.replace(hour=6, minute=59))
    assert not night.contains(NOON_TUESDAY.replace(hour=7))
    assert not night.contains(NOON_TUESDAY)
    (friday_night,) = parse_hours("Fri 22:00-06:00")
    friday = datetime(2026, 12, 4, 12, 0)
    assert not friday_night.contains(friday.replace(hour=5))  # that is Thursday night's
    assert friday_night.contains(friday.replace(hour=23))
    assert friday_night.contains(datetime(2026, 12, 5, 5, 59))  # Saturday morning
    assert not friday_night.contains(datetime(2026, 12, 5, 22, 30))
    assert friday_night.next_opening(NOON_TUESDAY) == datetime(2026, 12, 4, 22, 0)
    (weekend,) = parse_hours("sat SUNDAY 00:00-24:00")
    assert weekend.contains(datetime(2026, 12, 6, 23, 59)) and not weekend.contains(
        datetime(2026, 12, 7, 0, 0)
    )
    (wrapping,) = parse_hours("Fri-Mon 09:00-10:00")
    assert wrapping.days == {4, 5, 6, 0}


# -- the conditions, each with its signal faked ---------------------------------------------------------


def test_load_average_over_the_maximum_pauses() -> None:
    load = [0.5, 2.5, 9.0]
    limited = governor(maxLoad=2.0, loadPeriod=5, sources=Sources(load=loads(load)))
    paused = limited.evaluate()
    assert paused.sandboxes == 0 and not paused.fetch
    assert paused.reasons == ("5-minute load average 2.50 is over 2",)
    assert paused.causes == frozenset({"load"})
    load[1] = 1.9
    limited.resume()  # skip the wait before resuming; the condition must still allow it
    assert limited.evaluate().sandboxes == 4


def test_a_cpu_share_is_not_judged_over_too_few_ticks() -> None:
    samples = iter(
        [
            CpuSample(total=1000, busy=0, ours=0),
            CpuSample(total=1000 + TICKS // 2, busy=TICKS // 2, ours=0),  # 100% others, but half a CPU-second
            CpuSample(total=1000 + 4 * TICKS, busy=TICKS, ours=0),  # 25% over the whole span
        ]
    )
    limited = governor(maxOtherCpu=50, resumeAfter=0, sources=Sources(cpu=lambda: next(samples)))
    assert [limited.evaluate().sandboxes for _ in range(3)] == [4, 4, 4]


def test_other_programs_cpu_share_pauses_but_our_own_does_not() -> None:
    samples = iter(
        [
            CpuSample(total=1000, busy=100, ours=0),
            # 1000 ticks later: 900 busy, 800 of them ours: others used 10%.
            CpuSample(total=2000, busy=1000, ours=800),
            # Others used 60% (700 busy, 100 ours).
            CpuSample(total=3000, busy=1700, ours=900),
        ]
    )
    limited = governor(maxOtherCpu=50, resumeAfter=0, sources=Sources(cpu=lambda: next(samples)))
    assert limited.evaluate().sandboxes == 4  # a first sample has nothing to compare with
    assert limited.evaluate().sandboxes == 4
    paused = limited.evaluate()
    assert paused.sandboxes == 0
    assert paused.reasons == ("other programs use 60% of the CPUs, over 50%",)


def test_outside_the_working_hours_the_worker_pauses_and_gives_its_slices_back() -> None:
    moment = [NOON_TUESDAY]
    limited = governor(hours="Mon-Fri 18:00-08:00", sources=Sources(now=lambda: moment[0]))
    paused = limited.evaluate()
    assert paused.sandboxes == 0
    assert paused.reasons == ("outside the working hours (Mon Tue Wed Thu Fri 18:00-08:00) until Tue 18:00",)
    # The window opens in six hours, far beyond resumeWithin: give the slices back now.
    assert paused.give_back
    moment[0] = NOON_TUESDAY.replace(hour=19)
    limited.resume()
    assert limited.evaluate().sandboxes == 4


def test_a_window_opening_soon_keeps_the_slices() -> None:
    moment = [NOON_TUESDAY.replace(hour=17, minute=59)]
    limited = governor(hours="18:00-08:00", sources=Sources(now=lambda: moment[0]))
    decision = limited.evaluate()
    assert decision.sandboxes == 0 and not decision.give_back


def test_memory_share_allows_as_many_sandboxes_as_fit() -> None:
    sample = [MemorySample(ram=1000 * MIB, ours=400 * MIB, hosts=(100 * MIB,) * 3)]
    seen_hosts: list[Sequence[int]] = []

    def read(hosts: Sequence[int]) -> MemorySample:
        seen_hosts.append(hosts)
        return sample[0]

    limited = governor(
        maxMemoryShare=0.5, hosts=lambda: [11, 12, 13], resumeAfter=0, sources=Sources(memory=read)
    )
    assert limited.evaluate().sandboxes == 4  # 100 MiB besides hosts + 4 x 100 MiB fit in 500 MiB
    assert seen_hosts == [[11, 12, 13]]
    sample[0] = MemorySample(ram=1000 * MIB, ours=700 * MIB, hosts=(200 * MIB,) * 3)
    decision = limited.evaluate()
    assert decision.sandboxes == 2 and decision.fetch
    assert decision.reasons == (
        "the worker uses 700 MiB; its limit is 500 MiB, room for 2 sandbox(es) of 200 MiB",
    )
    sample[0] = MemorySample(ram=1000 * MIB, ours=600 * MIB, hosts=())
    assert limited.evaluate().sandboxes == 0


def test_on_battery_pauses() -> None:
    power = [True]
    limited = governor(pauseOnBattery=True, resumeAfter=0, sources=Sources(on_battery=lambda: power[0]))
    assert limited.evaluate().reasons == ("running on battery",)
    power[0] = False
    assert limited.evaluate().sandboxes == 4


def supplies(root: Path, **entries: dict[str, str]) -> Path:
    for name, files in entries.items():
        (root / name).mkdir(parents=True)
        for file, text in files.items():
            (root / name / file).write_text(text + "\n")
    return root


def test_the_power_supply_reader_on_fake_sysfs_trees(tmp_path: Path) -> None:
    plugged = {"type": "Mains", "online": "1"}
    unplugged = {"type": "Mains", "online": "0"}
    charging = {"type": "Battery", "status": "Charging", "present": "1"}
    discharging = {"type": "Battery", "status": "Discharging", "present": "1"}
    assert not on_battery(supplies(tmp_path / "a", AC=plugged, BAT0=charging))
    assert on_battery(supplies(tmp_path / "b", AC=unplugged, BAT0=discharging))
    # A laptop unplugged with a full battery reports "Not charging" or "Full", not Discharging.
    assert on_battery(supplies(tmp_path / "c", AC=unplugged, BAT0={**charging, "status": "Full"}))
    # USB-C charging with the barrel connector's supply offline.
    assert not on_battery(
        supplies(tmp_path / "d", AC=unplugged, ucsi={"type": "USB", "online": "1"}, BAT0=charging)
    )
    assert on_battery(supplies(tmp_path / "e", BAT0=discharging))  # no external supply reported
    assert not on_battery(supplies(tmp_path / "f", AC=unplugged))  # a desktop: no battery at all
    assert not on_battery(supplies(tmp_path / "g", AC=unplugged, BAT0={**discharging, "present": "0"}))
    assert not on_battery(tmp_path / "missing")


def test_user_activity_pauses_until_the_user_has_been_idle_long_enough() -> None:
    terminal: list[Idle | None] = [Idle(5.0, "/dev/pts/3")]
    display: list[Idle | None] = [None]
    limited = governor(
        pauseWhenUserActive=30,
        resumeAfter=0,
        sources=Sources(idle=(lambda: terminal[0], lambda: display[0])),
    )
    decision = limited.evaluate()
    assert decision.sandboxes == 0
    assert decision.reasons == ("the user was active 5 s ago (/dev/pts/3)",)
    terminal[0] = Idle(40.0, "/dev/pts/3")
    assert limited.evaluate().sandboxes == 4
    display[0] = Idle(2.0, "X11")  # the most recent input of any source counts
    assert limited.evaluate().reasons == ("the user was active 2 s ago (X11)",)
    terminal[0] = display[0] = None  # nothing can tell: the user counts as away
    assert limited.evaluate().sandboxes == 4


@pytest.fixture
def terminals() -> Iterator[list[str]]:
    """Two real pseudo-terminals of this test's own: their device paths."""
    pairs = [os.openpty() for _ in range(2)]
    try:
        yield [os.ttyname(follower) for _, follower in pairs]
    finally:
        for pair in pairs:
            for descriptor in pair:
                os.close(descriptor)


def test_terminal_idle_reads_the_newest_terminal_access_time(tmp_path: Path, terminals: list[str]) -> None:
    # A directory of our own holding links to our terminals, so that other sessions on this
    # machine do not count; os.stat follows the links to the real devices.
    for number, device in enumerate(terminals):
        (tmp_path / str(number)).symlink_to(device)
    (tmp_path / "not-a-terminal").write_text("")
    now = time.time()
    os.utime(terminals[0], (now - 500, now - 500))
    os.utime(terminals[1], (now - 120, now - 120))
    os.utime(tmp_path / "not-a-terminal", (now, now))
    idle = terminal_idle(tmp_path, now=lambda: now)
    assert idle is not None
    assert idle.source == str(tmp_path / "1") and idle.seconds == pytest.approx(120, abs=1)
    assert terminal_idle(tmp_path / "missing") is None  # the official manager throws here
    (tmp_path / "0").unlink()
    (tmp_path / "1").unlink()
    assert terminal_idle(tmp_path) is None


def test_terminal_input_updates_the_access_time_the_reader_sees(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    try:
        device = os.ttyname(follower)
        (tmp_path / "tty").symlink_to(device)
        os.utime(device, (time.time() - 600, time.time() - 600))
        os.write(leader, b"typed\n")  # a keystroke reaches the terminal...
        os.read(follower, 100)  # ...and a program reads it: the kernel marks the access
        idle = terminal_idle(tmp_path)
        assert idle is not None and idle.seconds < 10  # the kernel rounds to 8 s
    finally:
        os.close(leader)
        os.close(follower)


def test_x11_idle_without_a_usable_display_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    x11_idle = X11Idle(clock)
    monkeypatch.delenv("DISPLAY", raising=False)
    assert x11_idle() is None
    monkeypatch.setenv("DISPLAY", "unix:/nonexistent-display-for-a-test")
    assert x11_idle() is None
    helper = subprocess.run(
        [sys.executable, "-m", "dcp_worker.governor.x_idle"],
        input="\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (helper.returncode, helper.stdout) == (1, "")


FAKE_POINTER_MOTION = """
import ctypes, ctypes.util
x11 = ctypes.CDLL(ctypes.util.find_library("X11"))
xtst = ctypes.CDLL(ctypes.util.find_library("Xtst"))
x11.XOpenDisplay.restype = ctypes.c_void_p
x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]
display = x11.XOpenDisplay(None)
assert display
xtst.XTestFakeMotionEvent(display, -1, 10, 10, 0)
x11.XSync(display, 0)
x11.XCloseDisplay(display)
"""


@pytest.fixture
def x_display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A virtual X server (Xvfb), as ``$DISPLAY``."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb): the X11 idle time is not read")
    ready_read, ready_write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(ready_write), "-nolisten", "tcp"],
        pass_fds=[ready_write],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(ready_write)
    try:
        with os.fdopen(ready_read) as ready:
            display = f":{ready.readline().strip()}"  # written once the server takes clients
        monkeypatch.setenv("DISPLAY", display)
        yield display
    finally:
        server.terminate()
        server.wait()


def test_x11_idle_is_read_from_the_display_and_reset_by_input(x_display: str) -> None:
    x11_idle = X11Idle()
    try:

        def idle() -> float:
            reading = x11_idle()
            assert reading is not None and reading.source == "X11"
            return reading.seconds

        wait_until(lambda: idle() >= 2.0, "the display to be idle for 2 s")
        subprocess.run([sys.executable, "-c", FAKE_POINTER_MOTION], check=True)
        assert idle() < 2.0
    finally:
        x11_idle.close()


def test_x11_idle_tries_again_later_when_the_display_goes_away(x_display: str) -> None:
    clock = Clock()
    x11_idle = X11Idle(clock)
    try:
        assert x11_idle() is not None
        os.environ["DISPLAY"] = ":9999"  # as if the session ended (the helper keeps its own)
        x11_idle.close()
        assert x11_idle() is None
        os.environ["DISPLAY"] = x_display
        assert x11_idle() is None  # not retried at once
        clock.now = X11Idle.RETRY_SECONDS
        assert x11_idle() is not None
    finally:
        x11_idle.close()


def test_a_signal_that_cannot_be_read_limits_nothing_and_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreadable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    limited = governor(maxLoad=1, sources=Sources(load=unreadable))
    with caplog.at_level(logging.WARNING, logger="dcp_worker"):
        assert limited.evaluate().sandboxes == 4
        assert limited.evaluate().sandboxes == 4
    assert [record.getMessage() for record in caplog.records] == [
        " ! governor: cannot read the load condition's signal: no load average here"
    ]


# -- the real readers ----------------------------------------------------------------------------------


BURN = "import time\nend = time.process_time() + float(__import__('sys').argv[1])\nwhile time.process_time() < end: pass"


def wait_until(predicate: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    """Poll a process's state in /proc, which no event announces."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def stat_of(pid: int) -> ProcessStat:
    stat = process_stat(pid)
    assert stat is not None, f"process {pid} has gone"
    return stat


def state(pid: int) -> str:
    return stat_of(pid).state


def test_our_cpu_time_counts_live_and_reaped_children() -> None:
    before = read_cpu()
    subprocess.run([sys.executable, "-c", BURN, "0.3"], check=True)
    after_reaped = read_cpu()
    assert after_reaped.ours - before.ours >= 0.25 * TICKS
    assert after_reaped.busy - before.busy >= after_reaped.ours - before.ours - TICKS  # ours is part of busy
    burner = subprocess.Popen([sys.executable, "-c", BURN, "30"])
    try:
        wait_until(lambda: stat_of(burner.pid).cpu_ticks >= 0.2 * TICKS, "the burner to use CPU")
        child_ticks = stat_of(burner.pid).cpu_ticks
        live = read_cpu()
        assert live.ours - after_reaped.ours >= child_ticks
    finally:
        burner.kill()
        burner.wait()


def test_a_process_that_is_not_our_descendant_is_not_ours() -> None:
    # The middle process exits at once, so the sleeper is adopted by init: another program.
    middle = subprocess.run(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(middle.stdout)
    try:
        ours = {stat.pid for stat in process_tree(os.getpid())}
        assert os.getpid() in ours and orphan not in ours
        assert process_stat(orphan) is not None
    finally:
        os.kill(orphan, signal.SIGKILL)


def test_memory_reader_measures_ram_our_tree_and_each_host() -> None:
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_until(lambda: stat_of(host.pid).rss_bytes > 4 * MIB, "the host to be resident")
        sample = read_memory([host.pid, 999_999_999])  # a pid that is gone is left out
        assert sample.ram == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        assert len(sample.hosts) == 1 and sample.hosts[0] > 4 * MIB
        assert sample.ours > sample.hosts[0]
    finally:
        host.kill()
        host.wait()


# -- hysteresis and give-back ------------------------------------------------------------------------


def test_limits_apply_at_once_but_a_rise_waits_until_the_conditions_stay_clear() -> None:
    clock = Clock()
    load = [5.0, 0.0, 0.0]
    limited = governor(maxLoad=2, resumeAfter=30, clock=clock, sources=Sources(load=loads(load)))
    assert limited.evaluate().sandboxes == 0
    clock.now, load[0] = 10, 1.0
    waiting = limited.evaluate()
    assert waiting.sandboxes == 0 and waiting.reasons == ("waiting for the conditions to stay clear",)
    assert waiting.causes == frozenset()
    clock.now, load[0] = 20, 3.0  # it comes back before 30 s: the wait starts over
    assert limited.evaluate().sandboxes == 0
    clock.now, load[0] = 25, 1.0
    assert limited.evaluate().sandboxes == 0
    clock.now = 54
    assert limited.evaluate().sandboxes == 0
    clock.now = 55
    assert limited.evaluate().sandboxes == 4


def test_the_owner_pauses_and_resumes_at_once() -> None:
    owned = governor(resumeAfter=300)
    owned.pause()
    paused = owned.evaluate()
    assert (paused.sandboxes, paused.fetch, paused.reasons, paused.causes) == (
        0,
        False,
        (MANUAL_PAUSE,),
        frozenset({"manual"}),
    )
    assert owned.status()["manualPause"] is True
    owned.resume()
    assert owned.evaluate().sandboxes == 4


def test_resume_does_not_override_a_condition_still_tripped() -> None:
    limited = governor(pauseOnBattery=True, sources=Sources(on_battery=lambda: True))
    limited.pause()
    limited.evaluate()
    limited.resume()
    assert limited.evaluate().reasons == ("running on battery",)


def test_slices_are_given_back_when_a_pause_lasts_resume_within() -> None:
    clock = Clock()
    owned = governor(resumeWithin=120, clock=clock)
    owned.pause()
    assert not owned.evaluate().give_back
    clock.now = 119
    assert not owned.evaluate().give_back
    clock.now = 120
    decision = owned.evaluate()
    assert decision.give_back and decision.limited_for == 120
    assert decision.summary() == f"paused: {MANUAL_PAUSE}; returning held slices"
    owned.resume()
    assert not owned.evaluate().give_back


def test_a_new_figure_for_the_same_cause_is_not_a_new_decision() -> None:
    load = [3.0, 0.0, 0.0]
    limited = governor(maxLoad=2, sources=Sources(load=loads(load)))
    first = limited.evaluate()
    load[0] = 4.0
    second = limited.evaluate()
    assert first.reasons != second.reasons and not second.differs_from(first)
    limited.pause()
    assert limited.evaluate().differs_from(second)


def test_the_run_loop_reports_each_new_decision_and_wakes_on_commands() -> None:
    async def scenario() -> list[Decision]:
        decisions: list[Decision] = []
        arrived = asyncio.Event()

        def on_decision(decision: Decision) -> None:
            decisions.append(decision)
            arrived.set()

        owned = governor(governorInterval=3600)  # only a command can wake it
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(owned.run(on_decision))
            await arrived.wait()
            owned.pause()
            assert (await owned.settled()).sandboxes == 0
            owned.resume()
            assert (await owned.settled()).sandboxes == 4
            running.cancel()
        return decisions

    assert [decision.sandboxes for decision in asyncio.run(scenario())] == [4, 0, 4]


# -- the throttler, on real processes -----------------------------------------------------------------


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    try:
        yield children
    finally:
        for child in children:
            child.kill()
            os.kill(child.pid, signal.SIGCONT)
            child.wait()


def decision(sandboxes: int, cpu_cap: float = 100.0) -> Decision:
    return Decision(sandboxes=sandboxes, fetch=sandboxes > 0, cpu_cap=cpu_cap)


def test_the_throttler_stops_hosts_beyond_the_allowed_count_and_continues_them(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    first, second = (child.pid for child in sleepers)
    hosts = [first, second]

    async def scenario() -> None:
        throttler = Throttler(lambda: hosts, period=0.05)
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(throttler.run())
            throttler.apply(decision(1))
            await asyncio.to_thread(wait_until, lambda: state(second) == "T", "the second host to stop")
            assert state(first) != "T" and throttler.stopped == {second}
            throttler.apply(decision(0))
            await asyncio.to_thread(wait_until, lambda: state(first) == "T", "the first host to stop")
            throttler.apply(decision(2))
            await asyncio.to_thread(
                wait_until, lambda: "T" not in (state(first), state(second)), "both to go on"
            )
            throttler.apply(decision(0))
            await asyncio.to_thread(wait_until, lambda: state(first) == state(second) == "T", "both to stop")
            throttler.release(first)  # before a host is ended, it is continued
            assert state(first) != "T" and throttler.stopped == {second}
            hosts.remove(second)  # a host that leaves the list is continued too
            await asyncio.to_thread(wait_until, lambda: state(second) != "T", "the removed host to go on")
            hosts.append(second)
            await asyncio.to_thread(wait_until, lambda: state(second) == "T", "the host back in the list")
            running.cancel()
        assert throttler.stopped == frozenset()

    asyncio.run(scenario())
    # Cancelling the throttler continued everything it held.
    assert state(sleepers[1].pid) != "T"


def test_the_cpu_cap_holds_a_busy_host_to_its_share() -> None:
    burner = subprocess.Popen([sys.executable, "-c", BURN, "60"])
    cap = 25.0

    async def scenario() -> tuple[float, float]:
        throttler = Throttler(lambda: [burner.pid], period=0.2)
        throttler.apply(decision(1, cpu_cap=cap))
        start_ticks = stat_of(burner.pid).cpu_ticks
        started = time.monotonic()
        seen: set[str] = set()
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(throttler.run())
            while time.monotonic() - started < 2.0:
                seen.add(state(burner.pid))
                await asyncio.sleep(0.01)
            running.cancel()
        assert "T" in seen and seen - {"T"}, seen  # it was stopped and running in turn
        used = (stat_of(burner.pid).cpu_ticks - start_ticks) / TICKS
        return used, time.monotonic() - started

    try:
        used, elapsed = asyncio.run(scenario())
        # It cannot run while stopped: at most its share of the time, plus a period's slack.
        assert used <= elapsed * cap / 100 + 0.2 + 0.15, (used, elapsed)
        assert state(burner.pid) != "T"
    finally:
        burner.kill()
        burner.wait()
