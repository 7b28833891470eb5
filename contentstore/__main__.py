from contentstore.cli import run

run()
