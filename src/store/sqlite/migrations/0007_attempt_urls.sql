-- Attempt rows name their destination URL by reference: a URL is stored once, not once per
-- attempt (a busy destination's URL would otherwise fill most of the attempts table).
CREATE TABLE attempt_urls (
    id  INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE
);
ALTER TABLE attempts ADD COLUMN url_id INTEGER REFERENCES attempt_urls(id);
INSERT INTO attempt_urls (url) SELECT DISTINCT url FROM attempts WHERE url IS NOT NULL;
UPDATE attempts SET url_id = (SELECT id FROM attempt_urls WHERE attempt_urls.url = attempts.url),
                    url = NULL
 WHERE url IS NOT NULL;
