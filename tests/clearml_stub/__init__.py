"""A test double of the ClearML API and files servers, for tests only.

It answers the apiserver's JSON envelope on 127.0.0.1 from memory, so the real ClearML SDK and
``clearml-agent`` can be driven end to end in a test. It proves only that they are driven
correctly; it is not a ClearML server and is never offered to users as one.

Use the ``clearml_stub`` fixture (``tests.clearml_stub.fixture``)::

    from tests.clearml_stub import fixture as stub_fixtures

    clearml_stub = stub_fixtures.clearml_stub

    @pytest.mark.timeout(90)
    def test_x(clearml_stub):
        result = clearml_stub.run_python("from clearml import Task; ...", timeout=60)
        assert result.returncode == 0, result.output
        assert clearml_stub.task_by_name("my task")["status"] == "completed"
        assert clearml_stub.unknown_calls == []
"""

from tests.clearml_stub.stub import ACCESS_KEY, SECRET_KEY, ClearMLStub, ScriptResult

__all__ = ["ACCESS_KEY", "SECRET_KEY", "ClearMLStub", "ScriptResult"]
