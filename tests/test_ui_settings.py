"""Studio.update_settings and restart_pool (what the Settings tab calls), on real workers."""

from __future__ import annotations

import pytest

from studio.app import Studio
from studio.core.request import GenerationRequest
from studio.core.settings import load_settings


def test_update_settings_saves_and_says_what_needs_a_restart(home):
    studio = Studio(workers="cpu:1")
    try:
        assert studio.update_settings(language="zh", output_dir="") == []  # output_dir unchanged
        assert load_settings(studio.paths).language == "zh"
        assert studio.update_settings(language="zh") == []
        with pytest.raises(ValueError, match="Unknown setting"):
            studio.update_settings(colour="red")
        assert studio.update_settings(memory_profile="16gb") == []  # no workers yet: nothing to restart
        studio.start()
        pid_before = [w["pid"] for w in studio.pool_status()]
        assert studio.update_settings(memory_profile="full", port=7999) == ["memory_profile"]
        assert load_settings(studio.paths).port == 7999
        studio.restart_pool()
        rid = studio.submit(GenerationRequest("重启之后 after restart", width=256, height=256, steps=2))
        results = studio.wait(rid, timeout=180)
        assert [r["status"] for r in results] == ["done"]
        assert [w["pid"] for w in studio.pool_status()] != pid_before
    finally:
        studio.close()
