from dcp_worker.cli.main import run

run()
