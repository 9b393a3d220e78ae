#!/usr/bin/env python3
# profile-carddav-client: drives `cardbridge serve` for a callgrind profile (docs/BENCHMARKS.md,
# "Profile of the serving side"). `fill PORT N` PUTs N Apple-shaped cards as the admin
# (password bench-admin-pw), `sync PORT` runs one initial sync (sync-collection, multigets of 100).
import sys, base64, urllib.request, re, uuid, random, concurrent.futures as cf
mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0
base = f"http://127.0.0.1:{port}"
coll = "/dav/addressbooks/admin/persons/"
auth = "Basic " + base64.b64encode(b"admin:bench-admin-pw").decode()
def req(method, path, body=None, headers={}):
    r = urllib.request.Request(base + path, data=body, method=method, headers={"Authorization": auth, **headers})
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
if mode == "fill":
    random.seed(1)
    photo = base64.b64encode(bytes(random.getrandbits(8) for _ in range(6000))).decode()
    def put(i):
        u = str(uuid.UUID(int=i))
        photo_line = f"PHOTO;ENCODING=b;TYPE=JPEG:{photo}\r\n" if i % 10 == 0 else ""
        card = (f"BEGIN:VCARD\r\nVERSION:3.0\r\nPRODID:-//Apple Inc.//iPhone OS 17.0//EN\r\nUID:{u}\r\n"
                f"N:Müller{i};Zoë;;;\r\nFN:Zoë Müller{i}\r\nORG:Ærø Søn AG;\r\nTITLE:Geschäftsführerin\r\n"
                f"item1.EMAIL;type=INTERNET;type=WORK;type=pref:zoe{i}@example.org\r\nitem1.X-ABLabel:_$!<Work>!$_\r\n"
                f"TEL;type=CELL;type=VOICE;type=pref:+49 170 {i:07d}\r\n"
                f"ADR;type=HOME;type=pref:;;Hauptstraße {i};Köln;;50667;Germany\r\nNOTE:Met at the fair\\, 2024\r\n"
                f"BDAY:1984-03-{(i%28)+1:02d}\r\n{photo_line}END:VCARD\r\n")
        st, _ = req("PUT", f"{coll}{u}.vcf", card.encode(), {"Content-Type": "text/vcard", "If-None-Match": "*"})
        assert st in (201, 204), st
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(put, range(n)))
    print("filled", n)
else:
    body = b'<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>'
    st, out = req("REPORT", coll, body, {"Depth": "0", "Content-Type": "application/xml"})
    hrefs = re.findall(rb"<(?:\w+:)?href>([^<]+\.vcf)</", out)
    print("members", len(hrefs))
    total = 0
    for i in range(0, len(hrefs), 100):
        hs = b"".join(b"<d:href>" + h + b"</d:href>" for h in hrefs[i:i+100])
        mg = b'<?xml version="1.0"?><c:addressbook-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/><c:address-data/></d:prop>' + hs + b'</c:addressbook-multiget>'
        st, out = req("REPORT", coll, mg, {"Depth": "1", "Content-Type": "application/xml"})
        assert st == 207, st
        total += out.count(b"BEGIN:VCARD")
    print("cards", total)
