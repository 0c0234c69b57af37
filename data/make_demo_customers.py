"""Write data/demo_customers.csv: 2,000 customers around San Francisco for the scoring tour.

Most rows carry lat/lon; some only a ZIP code (located offline); one an address (needs
--geocoder); a few cannot be located at all, to show they are kept and marked.
"""

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(2026)
n = 2000
lat = (37.71 + rng.random(n) * 0.10).round(6).astype(object)
lon = (-122.51 + rng.random(n) * 0.13).round(6).astype(object)
zips = np.full(n, "", dtype=object)
address = np.full(n, "", dtype=object)
for k in range(1900, 1990):  # ZIP code only
    lat[k] = lon[k] = ""
    zips[k] = rng.choice(["94102", "94103", "94107", "94110", "94114", "94117", "94122"])
lat[1995] = lon[1995] = ""
address[1995] = "1 Ferry Building, San Francisco, CA"
lat[1996], lon[1996] = "north", "west"  # not numbers
lat[1997] = lon[1997] = ""  # nothing at all
lat[1998], lon[1998] = "122.41", "37.78"  # lat and lon swapped: lat out of range
out = Path(__file__).with_name("demo_customers.csv")
pd.DataFrame({"customer_id": [f"cust-{k:05d}" for k in range(n)],
              "email": [f"c{k}@example.com" for k in range(n)],
              "lat": lat, "lon": lon, "postal_code": zips, "address": address}).to_csv(out, index=False)
print(f"wrote {out}")
