"""Write netprobe/data/retired_roots.pem: every root that was in certifi's cacert.pem (Mozilla's
store) and is not in the newest one, with when it was first and last there.

Usage: python3 scripts/retired_roots.py PATH-TO-A-CLONE-OF-python-certifi > netprobe/data/retired_roots.pem.body"""
import subprocess, sys, warnings, re
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
REPO = sys.argv[1] if len(sys.argv) > 1 else "python-certifi"  # a clone of github.com/certifi/python-certifi
def git(*a):
    return subprocess.run(["git", "-C", REPO, *a], capture_output=True, check=True).stdout
commits = git("log", "--reverse", "--format=%H %cI", "--", "certifi/cacert.pem").decode().split("\n")
commits = [c.split() for c in commits if c.strip()]
first, last_seen, certs = {}, {}, {}
removed_at = {}
prev = set()
for sha, date in commits:
    try:
        pem = git("show", f"{sha}:certifi/cacert.pem")
    except subprocess.CalledProcessError:
        continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
        now = set()
        for b in blocks:
            try:
                c = x509.load_pem_x509_certificate(b)
            except Exception:
                continue
            fp = c.fingerprint(hashes.SHA256()).hex()
            now.add(fp)
            certs.setdefault(fp, (c, sha))
            first.setdefault(fp, (date, sha))
    for fp in prev - now:
        removed_at[fp] = (date, sha)
    for fp in now - prev:
        removed_at.pop(fp, None)
    prev = now
head_sha, head_date = commits[-1]
out = []
for fp in sorted(removed_at, key=lambda f: (removed_at[f][0], f)):
    c, _ = certs[fp]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        subj = c.subject.rfc4514_string()
        na = c.not_valid_after_utc.date().isoformat()
    pem = c.public_bytes(serialization.Encoding.PEM).decode()
    out.append(f"# {subj}\n# sha256 {fp}\n# in-store-from {first[fp][0][:10]} (certifi {first[fp][1][:12]})\n"
               f"# removed {removed_at[fp][0][:10]} (certifi {removed_at[fp][1][:12]})\n# not-after {na}\n{pem}")
print(len(removed_at), "retired; head", head_sha, head_date, file=sys.stderr)
sys.stdout.write("\n".join(out))
