// The console's only script: "Copy" buttons next to read-only fields (webhook URLs).
document.addEventListener("click", (e) => {
  const id = e.target && e.target.getAttribute && e.target.getAttribute("data-copy");
  if (!id) return;
  const field = document.getElementById(id);
  if (!field) return;
  field.select();
  const done = () => { e.target.textContent = "Copied"; };
  if (navigator.clipboard) {
    navigator.clipboard.writeText(field.value).then(done, () => document.execCommand("copy") && done());
  } else if (document.execCommand("copy")) {
    done();
  }
});
