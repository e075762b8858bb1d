"""The words both generators draw from: names of people and companies, job titles, deal qualification phrases,
lost reasons, sources; and the password of every generated user.

Shared so that the demo data and the benchmark datasets speak the same language: a lost reason, a source or an
industry in one exists in the other. Changing a word changes the rows both generate (see
`datasets.GENERATOR_VERSION`).
"""

# The password of every user the generators create; the README tells it to newcomers.
DEMO_PASSWORD = "pipeline-demo"

# Lost reasons and sources, each with its weight (how often it is drawn); a few notes for each lost reason.
LOST_REASONS = {"Price": 25, "Competitor": 22, "No budget": 14, "No decision": 18, "Timing": 12, "Went dark": 9}
LOST_NOTES = {
    "Price": ["Came in 20% above their budget.", "Asked for a discount we could not give."],
    "Competitor": ["Chose a cheaper competitor.", "Incumbent vendor matched our offer."],
    "No budget": ["Budget frozen until next fiscal year."],
    "No decision": ["Project deprioritised internally."],
    "Timing": ["Revisit next quarter.", "Busy with a merger; come back in six months."],
    "Went dark": ["No reply to the last five emails."],
}

SOURCES = {"Inbound": 22, "Outbound": 24, "Referral": 14, "Partner": 12, "Event": 10, "Website": 18}
LEAD_SOURCES = {"Inbound": 20, "Outbound": 14, "Referral": 10, "Partner": 8, "Event": 16, "Website": 32}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Adam Adriana Alan Alice Amelia Andre Anna Ben Bianca Brian Camila Carlos Caroline Chloe Chris Claire Daniela "
    "David Diana Diego Dmitri Elena Eli Emily Emma Eric Ethan Fatima Felix Fiona Frank Gabriel George Hana Harper "
    "Henry Ian Isabel Ivan Jack Jade Jason Jenna Jonas Julia Karen Kenji Laura Leo Liam Lily Lena Luis Maya Mateo "
    "Megan Mia Michael Mohammed Nadia Nathan Nina Noah Omar Oscar Paul Paula Peter Rachel Rafael Rebecca Ryan Sam "
    "Sara Sean Simone Sophie Stefan Steven Tara Theo Valentina Victor Wei Yara Yusuf Zoe"
)
LAST_NAMES = _words(
    "Abbott Adams Alvarez Andersen Baker Barros Bennett Berg Brooks Campbell Castro Chang Clarke Collins Cooper "
    "Costa Cruz Davies Dubois Edwards Evans Fischer Fleming Flores Foster Garcia Gomez Gonzalez Gray Green Hall "
    "Hansen Harris Hayes Hoffmann Hughes Ito Jansen Jensen Johnson Kaur Kelly Kim Kowalski Lambert Larsen Lee "
    "Lopez Martin Martinez Meyer Mitchell Moreau Murphy Nakamura Nguyen Novak Olsen Park Patel Perez Peters "
    "Phillips Ramirez Reed Reyes Richter Rivera Roberts Rodriguez Rossi Russo Santos Schmidt Schneider Scott "
    "Shah Singh Sokolov Stewart Sullivan Suzuki Taylor Thomas Torres Turner Walker Wang Ward Watson Weiss White "
    "Williams Wilson Wong Wright Young Zhang Ziegler"
)
JOB_TITLES = (
    "CEO",
    "CFO",
    "COO",
    "CTO",
    "VP Sales",
    "VP Operations",
    "Head of IT",
    "IT Manager",
    "Procurement Manager",
    "Operations Manager",
    "Finance Director",
    "Marketing Director",
    "Product Manager",
    "Office Manager",
    "Data Analyst",
)
COMPANY_PREFIXES = _words(
    "Acme Alder Alpine Amber Apex Arbor Atlas Aurora Beacon Birch Blue Bright Brook Cascade Cedar Citadel Clear "
    "Cobalt Copper Coral Crest Crown Delta Eagle Echo Ember Evergreen Falcon Fern Frontier Golden Granite Harbor "
    "Hawk Horizon Indigo Iron Juniper Keystone Lakeside Laurel Liberty Lumen Maple Meridian Metro Nimbus North "
    "Northwind Oak Orion Pacific Peak Pine Pioneer Prairie Quantum Redwood Ridge River Sage Sierra Silver Spruce "
    "Star Stone Summit Sun Terra Tidal Titan True Union Valley Vertex Vista Willow Zenith"
)
COMPANY_CORES = {
    "Analytics": "Software",
    "Apparel": "Retail",
    "Biotech": "Life sciences",
    "Builders": "Construction",
    "Capital": "Financial services",
    "Clinics": "Healthcare",
    "Consulting": "Professional services",
    "Dynamics": "Manufacturing",
    "Energy": "Energy",
    "Engineering": "Manufacturing",
    "Farms": "Agriculture",
    "Foods": "Food & beverage",
    "Freight": "Transportation & logistics",
    "Health": "Healthcare",
    "Hotels": "Hospitality",
    "Insurance": "Financial services",
    "Labs": "Life sciences",
    "Logistics": "Transportation & logistics",
    "Machinery": "Manufacturing",
    "Media": "Media",
    "Medical": "Healthcare",
    "Metals": "Manufacturing",
    "Motors": "Automotive",
    "Networks": "Telecommunications",
    "Pharma": "Life sciences",
    "Properties": "Real estate",
    "Realty": "Real estate",
    "Retail": "Retail",
    "Robotics": "Manufacturing",
    "Security": "Software",
    "Software": "Software",
    "Solar": "Energy",
    "Studios": "Media",
    "Systems": "Software",
    "Telecom": "Telecommunications",
    "Textiles": "Manufacturing",
    "Travel": "Hospitality",
    "Ventures": "Financial services",
    "Water": "Utilities",
    "Works": "Construction",
}
COMPANY_CORE_WORDS = tuple(COMPANY_CORES)  # in their order, for drawing by index
COMPANY_FORMS = ("Inc.", "LLC", "Ltd", "Group", "Corp.", "GmbH", "Co.", "", "", "", "")
CITIES = _words(
    "Austin Berlin Boston Chicago Denver Dublin Houston Lisbon London Lyon Madrid Miami Milan Munich Oslo Paris "
    "Phoenix Portland Prague Seattle Sydney Toronto Vienna Warsaw Zurich"
)
TLDS = (".com", ".com", ".com", ".io", ".co", ".net")

AUTHORITIES = (
    "CFO signs off above 50k",
    "VP Sales is the economic buyer",
    "Head of IT decides, CEO approves",
    "Procurement committee",
    "Our champion reports to the COO",
    "Owner decides alone",
)
NEEDS = (
    "Replace spreadsheets with a shared {product} setup",
    "Consolidate three tools into one",
    "Cut reporting time for the finance team",
    "Expand {product} to the new regional offices",
    "Meet new compliance requirements",
    "Give sales managers a reliable forecast",
)
TIMELINES = ("This quarter", "Next quarter", "Within 60 days", "Before the fiscal year ends", "After the budget review")
DISQUALIFIED_REASONS = ("No budget", "Student / job seeker", "Too small", "Competitor", "Duplicate", "Not reachable")
