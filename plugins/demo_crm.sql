-- The demo CRM: a tiny SQLite database the crm_sql plugin builds in memory
-- when no `database` is configured. The demo PBX's callers are here, each
-- written the way a person typed it into a CRM, not the way the PBX dials it:
-- the inbound demo call from 0301234567 pops "Ext Caller" of Contoso Ltd.
-- Numbers in the 020 7946 0xxx range are Ofcom's, reserved for drama.
CREATE TABLE contacts (
    id          INTEGER PRIMARY KEY,
    first_name  TEXT,
    last_name   TEXT,
    company     TEXT,
    phone       TEXT,
    mobile      TEXT,
    email       TEXT
);

INSERT INTO contacts (id, first_name, last_name, company, phone, mobile, email) VALUES
    (1001, 'Ext',    'Caller',  'Contoso Ltd',         '030 1234567',           NULL,            'ext.caller@contoso.example'),
    (1002, 'Alice',  'Archer',  'Fabrikam plc',        '+44 (0)20 7946 0100',   '07700 900100',  'alice@fabrikam.example'),
    (1003, 'Brian',  'Baker',   'Adventure Works',     '020-7946-0200 ext. 12', NULL,            'brian@adventure-works.example'),
    (1004, 'Chloe',  'Carter',  'Tailspin Toys',       '0044 20 7946 0300',     '+44 7700 900300', 'chloe@tailspin.example'),
    (1005, 'Reception', NULL,   'Contoso Ltd (front desk)', '201',              NULL,            NULL);
