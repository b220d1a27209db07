with source as (
    select * from {{ source('salesforce', 'event') }}
),

renamed as (
    select
        cast(id as {{ dtype('string') }}) as event_id,
        cast(who_id as {{ dtype('string') }}) as candidate_id,
        cast(what_id as {{ dtype('string') }}) as related_record_id,
        cast(type as {{ dtype('string') }}) as activity_type,
        cast(subject as {{ dtype('string') }}) as subject,
        cast(activity_date_time as {{ dtype('timestamptz') }}) as activity_at,
        cast(duration_in_minutes as {{ dtype('int') }}) as duration_minutes,
        cast(created_date as {{ dtype('timestamptz') }}) as created_at,
        cast(last_modified_date as {{ dtype('timestamptz') }}) as updated_at
    from source
    where not is_deleted
)

select * from renamed
