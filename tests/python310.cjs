// A real CPython 3.10 for the tests: Pyodide (CPython compiled to WebAssembly, with its standard library) run by Node.
// Usage: node python310.cjs PYODIDE_DIR, then one JSON request a line on stdin: {"code": "...", "mounts": ["/host/dir"]}.
// Each mount is a host folder seen at the same path inside the interpreter; the code runs as a __main__ module.
// First line out: {"version": sys.version}; then one JSON answer a line: {"stdout", "stderr", "status"}, status being
// the SystemExit code, 1 after an uncaught exception (its traceback on stderr). Modules imported and sys.path
// changes are undone after each request: one boot serves many independent runs.
const readline = require("node:readline");
const { loadPyodide } = require(`${process.argv[2]}/pyodide.js`);

const RUN = `
import contextlib, io, json, sys, traceback

_modules, _path = set(sys.modules), list(sys.path)
sys.dont_write_bytecode = True  # host folders are mounted: leave no __pycache__ in them


def _run(code):
    out, err, status = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exec(compile(code, "<request>", "exec"), {"__name__": "__main__"})
        except SystemExit as exit:
            if exit.code is None or isinstance(exit.code, int):
                status = exit.code or 0
            else:
                print(exit.code, file=sys.stderr)
                status = 1
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            for name in set(sys.modules) - _modules:
                del sys.modules[name]
            sys.path[:] = _path
    return json.dumps({"stdout": out.getvalue(), "stderr": err.getvalue(), "status": int(status)})
`;

(async () => {
  const pyodide = await loadPyodide({ indexURL: `${process.argv[2]}/` });
  pyodide.runPython(RUN);
  const run = pyodide.globals.get("_run");
  const mounted = new Set();
  console.log(JSON.stringify({ version: pyodide.runPython("import sys; sys.version") }));
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const request = JSON.parse(line);
    for (const folder of request.mounts || []) {
      // A folder inside a mounted one is already seen (and mkdirTree there would write to the host).
      if ([...mounted].some((done) => folder === done || folder.startsWith(`${done}/`))) continue;
      pyodide.FS.mkdirTree(folder);
      pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: folder }, folder);
      mounted.add(folder);
    }
    console.log(run(request.code));
  }
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
