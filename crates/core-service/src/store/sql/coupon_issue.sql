WITH slot AS (
  UPDATE coupon_campaigns SET issued = issued + 1
  WHERE id = $1 AND issued < quantity AND starts_at <= now() AND now() < ends_at
    AND NOT EXISTS (SELECT 1 FROM coupons WHERE campaign_id = $1 AND user_id = $2)
  RETURNING issued, valid_seconds, name, concert_id, performance_id, discount_kind,
            discount_amount_krw, discount_percent, max_discount_krw
), issued AS (
  INSERT INTO coupons (code, campaign_id, user_id, sequence, issued_at, expires_at)
  SELECT $3, $1, $2, slot.issued, now(), now() + make_interval(secs => slot.valid_seconds)
  FROM slot
  RETURNING code, campaign_id, sequence, issued_at, expires_at, used_at
)
SELECT issued.*, slot.name, slot.concert_id, slot.performance_id, slot.discount_kind,
       slot.discount_amount_krw, slot.discount_percent, slot.max_discount_krw
FROM issued, slot
