-- 0012: access reviews.
--
-- A review (model.AccessReview) and its items (model.ReviewItem, one per
-- grant under review) are kept whole as JSON, keyed as the service keys
-- them. state and deadline are columns of their own so that the reviews
-- due for closing are found without reading every tenant.

CREATE TABLE access_reviews (
    tenant_id text COLLATE "C" NOT NULL REFERENCES tenants (id),
    review_id text COLLATE "C" NOT NULL CHECK (review_id ~ '^rvw_[0-9a-f]{16}$'),
    state     text NOT NULL CHECK (state IN ('open', 'closed')),
    deadline  timestamptz NOT NULL,
    body      jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object' AND body->>'id' = review_id AND body->>'state' = state),
    PRIMARY KEY (tenant_id, review_id)
);

CREATE INDEX access_reviews_due ON access_reviews (deadline) WHERE state = 'open';

CREATE TABLE review_items (
    tenant_id text COLLATE "C" NOT NULL,
    review_id text COLLATE "C" NOT NULL,
    user_id   text COLLATE "C" NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 128),
    role_id   text COLLATE "C" NOT NULL,
    body      jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object' AND body->>'review' = review_id
                  AND body->>'user_id' = user_id AND body->>'role_id' = role_id),
    PRIMARY KEY (tenant_id, review_id, user_id, role_id),
    FOREIGN KEY (tenant_id, review_id) REFERENCES access_reviews (tenant_id, review_id)
);
